"""Generate the bundled toy datasets (deterministic by seed).

    python tools/make_toy_data.py coco data/toy_coco     # instance segmentation, COCO format
"""
import argparse

from xcit_dense.datasets import generate_toy_coco


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('kind', choices=['coco'], help='which dataset')
    parser.add_argument('root', help='output folder')
    parser.add_argument('--num-train', type=int, default=160)
    parser.add_argument('--num-val', type=int, default=40)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    files = generate_toy_coco(args.root, args.num_train, args.num_val, seed=args.seed)
    print(f'Wrote {args.num_train} train and {args.num_val} val images: {files}')


if __name__ == '__main__':
    main()
