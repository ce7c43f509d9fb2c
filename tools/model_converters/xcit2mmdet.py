"""Convert an XCiT checkpoint (the XCiT release's ImageNet, DINO, detection or segmentation
checkpoints, timm's, mmpretrain's; a file or URL) to a plain backbone checkpoint for
``xcit_dense.XCiT``.

    python tools/model_converters/xcit2mmdet.py xcit_small_12_p8_224.pth xcit_s12_p8.pth

The output holds ``{'state_dict': ...}`` with the backbone's own key names and loads with
``init_cfg=dict(type='Pretrained', checkpoint='xcit_s12_p8.pth')``. A ``.safetensors``
destination writes a safetensors file instead.
"""
import argparse
import os
import sys

import torch

from xcit_dense.checkpoint import (CheckpointReadError, convert_xcit_state_dict,
                                   load_state_dict_file)
from xcit_dense.checkpoint.xcit import FORMAT_NAMES


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='source checkpoint (.pth/.safetensors/URL)')
    parser.add_argument('dst', help='destination (.pth or .safetensors)')
    return parser.parse_args()


def main():
    args = parse_args()
    state, fmt = convert_xcit_state_dict(load_state_dict_file(args.src))
    if not state:
        raise SystemExit(f'{args.src} holds no XCiT backbone tensors')
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    if args.dst.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, args.dst)
    else:
        torch.save({'state_dict': state}, args.dst)
    print(f'Converted {len(state)} tensors from {args.src} ({FORMAT_NAMES[fmt]} format) to '
          f'{args.dst}')


if __name__ == '__main__':
    try:  # needs torch only, not OpenMMLab (whose tools report errors through short_errors)
        main()
    except CheckpointReadError as e:  # as the other tools report it
        sys.stderr.write(f'{os.path.basename(__file__)}: error: {type(e).__name__}: {e}\n')
        sys.exit(2)
