"""Generate the bundled toy datasets (deterministic by seed).

    python tools/make_toy_data.py coco data/toy_coco     # instance segmentation, COCO format
    python tools/make_toy_data.py coco-panoptic data/toy_coco_panoptic   # COCO panoptic format
    python tools/make_toy_data.py ade data/toy_ade       # semantic segmentation, ADE20k layout
    python tools/make_toy_data.py large-scenes data/large_scenes [--num-val 2] [--size 3072]
        # scenes of hundreds of shapes at the demo scale, COCO JSON and ADE-style label maps
"""
import argparse

from xcit_dense.datasets import (generate_large_scenes, generate_toy_ade, generate_toy_coco,
                                 generate_toy_coco_panoptic)

GENERATORS = {'coco': generate_toy_coco, 'coco-panoptic': generate_toy_coco_panoptic,
              'ade': generate_toy_ade, 'large-scenes': generate_large_scenes}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('kind', choices=list(GENERATORS), help='which dataset')
    parser.add_argument('root', help='output folder')
    parser.add_argument('--num-train', type=int, default=160, help='(not for large-scenes)')
    parser.add_argument('--num-val', type=int, help='validation images (default 40; '
                        'large-scenes: the number of scenes, default 2)')
    parser.add_argument('--size', type=int, default=3072, help='large-scenes: the side of '
                        'each square scene in pixels')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    if args.kind == 'large-scenes':
        num_scenes = 2 if args.num_val is None else args.num_val
        files = generate_large_scenes(args.root, num_scenes, args.size, seed=args.seed)
        print(f'Wrote {num_scenes} scenes of {args.size}x{args.size}: {files}')
        return
    num_val = 40 if args.num_val is None else args.num_val
    files = GENERATORS[args.kind](args.root, args.num_train, num_val, seed=args.seed)
    print(f'Wrote {args.num_train} train and {num_val} val images: {files}')


if __name__ == '__main__':
    main()
