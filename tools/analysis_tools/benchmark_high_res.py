"""Whole-image inference of a detector or segmentor against the number of pixels: time and peak
memory of each stage (data preprocessing, backbone, pyramid, neck, heads, post-processing),
as a CSV and a log-log plot.

    python tools/analysis_tools/benchmark_high_res.py configs/maskrcnn_xcit_s12_p8_coco.py \\
        --sizes 2000x3000 4000x6000
    python tools/analysis_tools/benchmark_high_res.py CONFIG --checkpoint CKPT --sizes ...

Each size runs in a fresh process: one forward at 256x256 to warm up, then one measured
``test_step`` on a generated scene of toy shapes (the demo models' objects, at their scale) at
its own resolution, no tiling, no resize. Without ``--checkpoint`` the weights are random (the
cost barely depends on them; the number of detections does). Memory is the process's resident
memory (its peak while each stage ran, sampled every 2 ms; and ``ru_maxrss``) on CPU, and
``torch.cuda.max_memory_allocated`` on a GPU. The CSV also records the size one head's attention
matrix of a global-attention ViT of the backbone's width would take at each size.
"""
import argparse
import csv
import json
import os
import resource
import subprocess
import sys
from typing import Dict, List, Tuple

import numpy as np
import torch

import xcit_dense  # noqa: F401
from xcit_dense.checkpoint import load_state_dict_file
from xcit_dense.datasets.shapes import draw_large_scene
from xcit_dense.engine import (build_analysis_model, config_scope, dummy_data_samples,
                               load_model_strictly, short_errors)
from xcit_dense.engine.stages import STAGES, StageProfiler, resident_bytes

SIZES = ['1024x1024', '2048x2048', '2000x3000', '3000x4000', '4000x6000', '4096x8192',
         '8192x8192']
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')


def parse_size(text: str) -> Tuple[int, int]:
    h, _, w = text.lower().partition('x')
    return int(h), int(w or h)


def global_attention_cost(H: int, W: int, patch_size: int, dim: int, depth: int) -> dict:
    """For an H x W image: the tokens of a global-attention ViT, the multiply-adds of its token
    mixing (q k^T and attn v, in every layer) and the size of one head's N x N attention
    matrix in fp32, were it materialised."""
    n = -(-H // patch_size) * -(-W // patch_size)
    return dict(tokens=n, attention_macs=2 * n * n * dim * depth,
                attention_matrix_gb_per_head=n * n * 4 / 2**30)


def measure(config: str, checkpoint: str, H: int, W: int, device: str) -> Dict:
    """One measured inference at H x W in this process (see the module's description)."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    scope = config_scope(cfg)
    model = build_analysis_model(cfg).to(device)
    if checkpoint:
        load_model_strictly(model, load_state_dict_file(checkpoint), checkpoint,
                            'be measured at its initialisation')
    with torch.no_grad():
        model.test_step(dict(inputs=[torch.zeros(3, 256, 256, dtype=torch.uint8)],
                             data_samples=dummy_data_samples(scope, 256, 256)))
    scene, _ = draw_large_scene(np.random.default_rng(0), H, W)
    image = torch.from_numpy(scene[..., ::-1].copy()).permute(2, 0, 1)  # BGR, as loaded
    del scene
    data = dict(inputs=[image], data_samples=dummy_data_samples(scope, H, W))
    profiler = StageProfiler(device)
    profiler.attach(model)
    before = resident_bytes()
    with torch.no_grad():
        result, seconds, peaks, total = profiler.run(lambda: model.test_step(data)[0])
    if scope == 'mmseg':
        output = f'label map {tuple(result.pred_sem_seg.data.shape[1:])}'
    else:
        output = f'{len(result.pred_instances)} detections'
    row = dict(config=os.path.basename(config), weights='trained' if checkpoint else 'random',
               device=device, threads=torch.get_num_threads(), height=H, width=W,
               megapixels=round(H * W / 1e6, 3), total_s=round(total, 3),
               peak_gb=round((max(peaks.values()) if device.startswith('cuda') else
                              resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
                             / 2**30, 3),
               before_gb=round(before / 2**30, 3), output=output)
    for stage in STAGES:
        row[f'{stage}_s'] = round(seconds.get(stage, 0.), 3)
        row[f'{stage}_peak_gb'] = round(peaks.get(stage, 0) / 2**30, 3)
    backbone = model.backbone
    if hasattr(backbone, 'arch'):
        row['vit_attention_gb_per_head'] = round(global_attention_cost(
            H, W, backbone.patch_size, backbone.embed_dim,
            backbone.arch['depth'])['attention_matrix_gb_per_head'], 1)
    return row


def run_child(args, size: str) -> Dict:
    H, W = parse_size(size)
    command = [sys.executable, os.path.abspath(__file__), args.config, '--child', f'{H}x{W}',
               '--device', args.device, '--threads', str(args.threads)]
    if args.checkpoint:
        command += ['--checkpoint', args.checkpoint]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith('RESULT ')]
    if done.returncode or not lines:
        raise RuntimeError(f'the measurement at {size} failed:\n{done.stderr[-3000:]}')
    return json.loads(lines[-1][len('RESULT '):])


def plot(rows: List[Dict], path: str) -> None:
    """Log-log plot of each stage's time and of peak memory against megapixels."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    mp = [r['megapixels'] for r in rows]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    for stage in ('total',) + STAGES:
        values = [float(r[f'{stage}_s']) for r in rows]
        if max(values) > 0:
            ax_t.plot(mp, values, marker='o', label=stage, linewidth=2.5 if stage == 'total'
                      else 1.2)
    ax_m.plot(mp, [float(r['peak_gb']) for r in rows], marker='o', label='peak (process)')
    for ax, first in ((ax_t, float(rows[0]['total_s'])), (ax_m, float(rows[0]['peak_gb']))):
        ax.plot(mp, [first * m / mp[0] for m in mp], 'k--', linewidth=0.8, label='linear')
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('megapixels')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=8)
    ax_t.set_ylabel('seconds')
    ax_m.set_ylabel('GB')
    fig.suptitle(f"{rows[0]['config']} ({rows[0]['weights']} weights, {rows[0]['device']}, "
                 f"{rows[0]['threads']} threads)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--checkpoint', help='trained weights (default: random)')
    parser.add_argument('--sizes', nargs='+', default=SIZES, help='HxW (or one side)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--out', help='CSV file (default: results/high_res_CONFIG_WEIGHTS.csv '
                        'beside this tool); the plot is written beside it as .png')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print('RESULT ' + json.dumps(measure(args.config, args.checkpoint,
                                             *parse_size(args.child), args.device)))
        return
    rows = []
    for size in args.sizes:
        row = run_child(args, size)
        rows.append(row)
        stages = ', '.join(f'{s} {row[f"{s}_s"]:.1f}' for s in STAGES)
        print(f"{size}: {row['total_s']:.1f} s ({stages}); peak {row['peak_gb']:.2f} GB "
              f"({row['output']})", flush=True)
    base = min(rows, key=lambda r: abs(r['megapixels'] - 4))
    for row in rows:
        row['time_per_pixel_vs_4mp'] = round(
            row['total_s'] / row['megapixels'] / (base['total_s'] / base['megapixels']), 2)
    weights = rows[0]['weights']
    name = os.path.splitext(os.path.basename(args.config))[0]
    out = args.out or os.path.join(RESULTS, f'high_res_{name}_{weights}_{args.device}.csv')
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, os.path.splitext(out)[0] + '.png')
    print(f'wrote {out} and its .png')


if __name__ == '__main__':
    with short_errors(os.path.basename(__file__)):
        main()
