"""Whole-image inference of a detector or segmentor at high resolution (no tiling, no resize):
time and peak memory, beside what a global-attention ViT of the backbone's width would need.

    python tools/analysis_tools/benchmark_high_res.py configs/maskrcnn_xcit_s12_p8_coco.py \\
        --shape 4000 6000
    python tools/analysis_tools/benchmark_high_res.py \\
        configs/sem_fpn/fpn_xcit-s12-p8_8xb2-80k_ade20k-512x512.py --shape 2048 4096

Weights are random (pretrained loading off): the cost does not depend on them. Peak memory is
the process's peak resident memory above what it held before the inference (CPU), or
``torch.cuda.max_memory_allocated`` (GPU).
"""
import argparse
import os
import resource
import time

import torch
from mmengine.config import Config

import xcit_dense  # noqa: F401
from xcit_dense.engine import (build_analysis_model, config_scope, dummy_data_samples,
                               short_errors)


def rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def global_attention_cost(H: int, W: int, patch_size: int, dim: int, depth: int) -> dict:
    """For an H x W image: the tokens of a global-attention ViT, the multiply-adds of its token
    mixing (q k^T and attn v, in every layer) and the size of one head's N x N attention
    matrix in fp32, were it materialised."""
    n = -(-H // patch_size) * -(-W // patch_size)
    return dict(tokens=n, attention_macs=2 * n * n * dim * depth,
                attention_matrix_gb_per_head=n * n * 4 / 2**30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'))
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    H, W = args.shape
    cfg = Config.fromfile(args.config)
    scope = config_scope(cfg)
    model = build_analysis_model(cfg).to(args.device)
    image = torch.randint(0, 256, (3, H, W), dtype=torch.uint8)
    data = dict(inputs=[image], data_samples=dummy_data_samples(scope, H, W))
    cuda = args.device.startswith('cuda')
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = rss_mb()
    start = time.perf_counter()
    with torch.no_grad():
        result = model.test_step(data)[0]
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    if scope == 'mmseg':
        what = f'segmentation map {tuple(result.pred_sem_seg.data.shape[1:])}'
    else:
        what = (f'{len(result.pred_instances)} detections, masks '
                f'{tuple(result.pred_instances.masks.shape[1:])}')
    backbone = model.backbone
    print(f'{type(model).__name__} with {type(backbone).__name__} at {H}x{W} on {args.device} '
          f'({torch.get_num_threads()} threads): {seconds:.1f} s, peak memory +{peak:.0f} MB '
          f'({what})')
    if hasattr(backbone, 'arch'):
        vit = global_attention_cost(H, W, backbone.patch_size, backbone.embed_dim,
                                    backbone.arch['depth'])
        print(f'a global-attention ViT (width {backbone.embed_dim}, depth '
              f'{backbone.arch["depth"]}, patch {backbone.patch_size}) would mix '
              f'{vit["tokens"]} tokens with {vit["attention_macs"] / 1e12:.4g} T multiply-adds '
              f'of attention alone, and one attention matrix (one head, fp32) takes '
              f'{vit["attention_matrix_gb_per_head"]:.4g} GB')


if __name__ == '__main__':
    with short_errors(os.path.basename(__file__)):
        main()
