"""Generate the bundled toy datasets (deterministic by seed).

    python tools/make_toy_data.py coco data/toy_coco     # instance segmentation, COCO format
    python tools/make_toy_data.py coco-panoptic data/toy_coco_panoptic   # COCO panoptic format
    python tools/make_toy_data.py ade data/toy_ade       # semantic segmentation, ADE20k layout
"""
import argparse

from xcit_dense.datasets import generate_toy_ade, generate_toy_coco, generate_toy_coco_panoptic

GENERATORS = {'coco': generate_toy_coco, 'coco-panoptic': generate_toy_coco_panoptic,
              'ade': generate_toy_ade}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('kind', choices=list(GENERATORS), help='which dataset')
    parser.add_argument('root', help='output folder')
    parser.add_argument('--num-train', type=int, default=160)
    parser.add_argument('--num-val', type=int, default=40)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    files = GENERATORS[args.kind](args.root, args.num_train, args.num_val, seed=args.seed)
    print(f'Wrote {args.num_train} train and {args.num_val} val images: {files}')


if __name__ == '__main__':
    main()
