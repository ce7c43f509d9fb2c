"""Generate the bundled toy datasets (deterministic by seed).

    python tools/make_toy_data.py coco data/toy_coco     # instance segmentation, COCO format
    python tools/make_toy_data.py ade data/toy_ade       # semantic segmentation, ADE20k layout
"""
import argparse

from xcit_dense.datasets import generate_toy_ade, generate_toy_coco


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('kind', choices=['coco', 'ade'], help='which dataset')
    parser.add_argument('root', help='output folder')
    parser.add_argument('--num-train', type=int, default=160)
    parser.add_argument('--num-val', type=int, default=40)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    generate = generate_toy_coco if args.kind == 'coco' else generate_toy_ade
    files = generate(args.root, args.num_train, args.num_val, seed=args.seed)
    print(f'Wrote {args.num_train} train and {args.num_val} val images: {files}')


if __name__ == '__main__':
    main()
