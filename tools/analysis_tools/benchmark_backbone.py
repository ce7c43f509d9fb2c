"""Backbone speed and memory across input sizes, side by side, with a CSV and a log-log plot.

    python tools/analysis_tools/benchmark_backbone.py                       # CPU, fp32
    python tools/analysis_tools/benchmark_backbone.py --device cuda --dtype bf16

Models (each measured in a fresh subprocess, so peak memory is its own):
    xcit    xcit_dense's XCiT trunk (``forward_blocks``: the block outputs at ``out_indices``
            as NCHW maps, before the pyramid, i.e. the work timm's model does), presets from
            --archs;
    timm    timm's Xcit with the same weights, ``forward_intermediates`` at the same indices;
    vit     a global-attention ViT of the same width, depth and patch size (timm, position
            embeddings interpolated to the input);
    swin    Swin-T from mmdet (when mmdet is installed);
    crossvit  xcit_dense's CrossViT trunk (``forward_branches``: both branches' maps before
            the pyramid), presets from --crossvit-archs (ARCH or ARCH:STRIDE, STRIDE the
            small-patch branch's, 8 by default or timm's 12).

Time is the median forward time of ``--runs`` runs after ``--warmup`` runs. Memory is the peak
over the forward passes above what the model and input already held: on CPU the rise of the
process's peak RSS, on GPU ``torch.cuda.max_memory_allocated``. A model whose estimated time at
a size exceeds ``--max-seconds`` (quadratic attention) is skipped and its estimate recorded.
"""
import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch

SIZES = ['512x512', '1024x1024', '1536x1536', '2048x2048', '2160x3840']
SWIN_T = dict(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7)


def parse_size(text: str) -> Tuple[int, int]:
    h, _, w = text.partition('x')
    return int(h), int(w or h)


def xcit_macs(arch: Dict, patch_size: int, H: int, W: int, pyramid: bool = True) -> int:
    """Multiply-adds of the XCiT backbone (stem, blocks and, if ``pyramid``, the pyramid
    adapters) on an H x W image."""
    C, depth, heads = arch['embed_dim'], arch['depth'], arch['num_heads']
    Hp, Wp = math.ceil(H / patch_size), math.ceil(W / patch_size)
    N = Hp * Wp
    stem, c_in, h, w = 0, 3, H, W
    widths = [C // 2 ** i for i in reversed(range(int(math.log2(patch_size))))]
    for c_out in widths:
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        stem += 9 * c_in * c_out * h * w
        c_in = c_out
    pos = 64 * C * N
    d = C // heads
    # qkv, cross-covariance, (attention folded into) projection, LPI, MLP; and per image the
    # d x d attention folded into the C x C projection
    block = (3 * C * C + C * d + C * C + 2 * 9 * C + 8 * C * C) * N + C * C * d
    # 2x2 deconvs: p8 one at stride 8; p16 two for stride 4 (the second on 4x the pixels)
    # and one for stride 8
    deconv_pixels = {8: N, 16: N + 4 * N + N}[patch_size]
    return stem + pos + depth * block + (4 * C * C * deconv_pixels if pyramid else 0)


def mm_gflops_per_s(arch: Dict, patch_size: int, H: int, W: int, device: str,
                    runs: int = 3) -> float:
    """What ``torch.mm`` reaches on this machine for the block's four matrix products at this
    size (qkv, projection, MLP in and out: nearly all of XCiT's FLOPs), in GFLOP/s."""
    C = arch['embed_dim']
    N = math.ceil(H / patch_size) * math.ceil(W / patch_size)
    flops, seconds = 0, 0.
    for k, n in ((C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)):
        a = torch.randn(N, k, device=device)
        b = torch.randn(k, n, device=device)
        times = []
        for _ in range(runs + 1):
            start = time.perf_counter()
            torch.mm(a, b)
            if device.startswith('cuda'):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        flops += 2 * N * k * n
        seconds += statistics.median(times[1:])
    return flops / seconds / 1e9


def label(model: str, arch: str, patch_size: int) -> str:
    """The ``arch`` column: preset and patch size (CrossViT: small-branch stride)."""
    if model == 'swin':
        return 'swin_t'
    return f'{arch}_s{patch_size}' if model == 'crossvit' else f'{arch}_p{patch_size}'


def build(model: str, arch_name: str, patch_size: int):
    """The model to time and a function running it on an image batch."""
    import timm
    from xcit_dense.models import CrossViT, XCiT
    from xcit_dense.models.xcit import resolve_arch
    torch.manual_seed(0)
    if model == 'swin':
        from mmdet.models.backbones import SwinTransformer
        swin = SwinTransformer(**SWIN_T)
        return swin, swin
    if model == 'crossvit':
        crossvit = CrossViT(arch_name, patch_strides=(patch_size, 16))
        return crossvit, crossvit.forward_branches
    arch = resolve_arch(arch_name)
    if model in ('xcit', 'timm'):
        ref = timm.create_model(f"xcit_{arch_name}_p{patch_size}_224")
        if model == 'timm':
            indices = list(XCiT(arch_name, patch_size=patch_size).out_indices)
            return ref, lambda x: ref.forward_intermediates(x, indices=indices,
                                                            intermediates_only=True)
        ours = XCiT(arch_name, patch_size=patch_size)
        ours.load_state_dict(ref.state_dict(), strict=False)
        return ours, ours.forward_blocks
    if model == 'vit':
        vit = timm.models.VisionTransformer(
            img_size=224, patch_size=patch_size, embed_dim=arch['embed_dim'],
            depth=arch['depth'], num_heads=arch['embed_dim'] // 64, class_token=False,
            global_pool='', dynamic_img_size=True, num_classes=0)
        indices = list(XCiT(arch_name, patch_size=patch_size).out_indices)
        return vit, lambda x: vit.forward_intermediates(x, indices=indices,
                                                        intermediates_only=True)
    raise ValueError(f'unknown model {model}')


def _rss_peak_kb() -> Tuple[int, int]:
    """(current RSS, peak RSS) of this process in kB, from /proc."""
    values = {}
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(('VmRSS', 'VmHWM')):
                key, value = line.split(':')
                values[key] = int(value.split()[0])
    return values['VmRSS'], values['VmHWM']


def measure(model: str, arch: str, patch_size: int, size: str, device: str, dtype: str,
            runs: int, warmup: int, threads: int) -> Dict:
    """Run in the child process: time and peak memory of one model at one size."""
    torch.set_num_threads(threads)
    net, fn = build(model, arch, patch_size)
    net.eval()  # (some backbones' train() returns None)
    net.to(device)
    H, W = parse_size(size)
    x = torch.randn(1, 3, H, W, device=device)
    autocast = dict(fp32=None, bf16=torch.bfloat16, fp16=torch.float16)[dtype]
    cuda = device.startswith('cuda')

    def run():
        amp = torch.autocast(device.split(':')[0], dtype=autocast, enabled=autocast is not None)
        with torch.inference_mode(), amp:
            out = fn(x)
        if cuda:
            torch.cuda.synchronize()
        return out

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base, _ = _rss_peak_kb()
        base *= 1024
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        out = run()
        if i >= warmup:
            times.append(time.perf_counter() - start)
        del out
    peak = torch.cuda.max_memory_allocated() if cuda else _rss_peak_kb()[1] * 1024
    row = dict(model=model, arch=label(model, arch, patch_size), size=size, pixels=H * W,
               device=device, dtype=dtype, time_s=statistics.median(times),
               peak_mem_mb=(peak - base) / 2 ** 20)
    if model == 'xcit':
        from xcit_dense.models.xcit import resolve_arch
        arch_cfg = resolve_arch(arch)
        row['gflops'] = 2 * xcit_macs(arch_cfg, patch_size, H, W, pyramid=False) / 1e9
        row['gflops_per_s'] = row['gflops'] / row['time_s']
        if dtype == 'fp32':
            row['mm_gflops_per_s'] = mm_gflops_per_s(arch_cfg, patch_size, H, W, device)
            row['mm_efficiency'] = row['gflops_per_s'] / row['mm_gflops_per_s']
    return row


def run_child(args, model: str, arch: str, patch_size: int, size: str) -> Optional[Dict]:
    cmd = [sys.executable, __file__, '--child', json.dumps(dict(
        model=model, arch=arch, patch_size=patch_size, size=size, device=args.device,
        dtype=args.dtype, runs=args.runs, warmup=args.warmup, threads=args.threads))]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    if proc.returncode != 0:
        reason = 'out of memory' if proc.returncode in (-9, 137) else proc.stderr[-300:]
        print(f'  {model} {arch} {size}: failed ({reason.strip()})')
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plot(rows: List[Dict], path: str) -> None:
    """Time and peak memory against pixels, log-log: a colour per model, a line style per
    variant, and a dotted line of slope 1 (cost proportional to the pixels) for reference."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    models = sorted({r['model'] for r in rows}, key=lambda m: (m != 'xcit', m))
    colours = dict(zip(models, plt.rcParams['axes.prop_cycle'].by_key()['color']))
    styles = ['-', '--', '-.', ':']
    for model in models:
        archs = sorted({r['arch'] for r in rows if r['model'] == model})
        for arch, style in zip(archs, styles):
            pts = sorted((r['pixels'], r['time_s'], r['peak_mem_mb']) for r in rows
                         if (r['model'], r['arch']) == (model, arch))
            px = [p[0] / 1e6 for p in pts]
            for ax, values in zip(axes, ([p[1] for p in pts], [max(p[2], 1e-3) for p in pts])):
                ax.loglog(px, values, style, color=colours[model], marker='o', markersize=4,
                          lw=2.2 if model == 'xcit' else 1.3, label=f'{model} {arch}')
    for ax, key, ylabel in zip(axes, ('time_s', 'peak_mem_mb'),
                               ('forward time (s)', 'peak memory above the model (MB)')):
        px = sorted({r['pixels'] / 1e6 for r in rows})
        if len(px) > 1:  # slope 1 through the geometric middle of the data
            values = [max(r[key], 1e-3) for r in rows]
            mid = math.exp(statistics.mean(map(math.log, values)))
            x_mid = math.exp(statistics.mean(math.log(r['pixels'] / 1e6) for r in rows))
            ax.loglog([px[0], px[-1]], [mid * px[0] / x_mid, mid * px[-1] / x_mid], ':',
                      color='grey', label='proportional to pixels')
        ax.set_xlabel('megapixels')
        ax.set_ylabel(ylabel)
        ax.set_xticks(px, [f'{v:.2g}' for v in px])  # the measured sizes
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which='both', alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    dev = rows[0]['device'] if rows else ''
    fig.suptitle(f'Backbone forward, batch 1, {dev} {rows[0]["dtype"] if rows else ""}')
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def read_csv(path: str) -> List[Dict]:
    """Rows of a CSV this tool wrote, with numbers as numbers."""
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key, value in row.items():
            if key not in ('model', 'arch', 'size', 'device', 'dtype') and value != '':
                row[key] = float(value)
        row['pixels'] = int(row['pixels'])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--archs', nargs='+', default=['small_12:8', 'small_12:16'],
                        help='XCiT presets as ARCH:PATCH (also used for timm and vit)')
    parser.add_argument('--crossvit-archs', nargs='+', default=['18_dagger'],
                        help='CrossViT presets as ARCH or ARCH:STRIDE (small-branch stride, '
                             '8 or 12)')
    parser.add_argument('--models', nargs='+',
                        default=['xcit', 'timm', 'vit', 'swin', 'crossvit'])
    parser.add_argument('--sizes', nargs='+', default=SIZES, help='HxW (or one side)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', default='fp32', choices=['fp32', 'bf16', 'fp16'])
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--max-seconds', type=float, default=120.,
                        help='skip a model at a size where its estimated time exceeds this')
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.add_argument('--replot', metavar='CSV',
                        help='measure nothing: redraw the plot and the ratios of a CSV')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(**json.loads(args.child))))
        return
    if args.replot:
        rows = read_csv(args.replot)
        png_path = os.path.splitext(args.replot)[0] + '.png'
        plot(rows, png_path)
        print(f'Wrote {png_path}')
        print_ratios(rows, [])
        return

    os.makedirs(args.out_dir, exist_ok=True)
    rows, skipped = [], []
    sizes = sorted(args.sizes, key=lambda s: math.prod(parse_size(s)))
    for model in args.models:
        if model == 'swin':
            archs = [('swin_t', 0)]
        elif model == 'crossvit':
            archs = [(a.partition(':')[0], int(a.partition(':')[2] or 8))
                     for a in args.crossvit_archs]
        else:
            archs = [(a.split(':')[0], int(a.split(':')[1])) for a in args.archs]
        for arch, patch in archs:
            last = None
            for size in sizes:
                pixels = math.prod(parse_size(size))
                if last is not None:  # global attention is quadratic: extrapolate first
                    power = 2 if model in ('vit', 'crossvit') else 1
                    estimate = last['time_s'] * (pixels / last['pixels']) ** power
                    if estimate > args.max_seconds:
                        skipped.append(dict(model=model, arch=label(model, arch, patch),
                                            size=size, estimated_s=round(estimate, 1)))
                        print(f'  skip {model} {label(model, arch, patch)} {size}: estimated '
                              f'{estimate:.0f} s > --max-seconds')
                        continue
                row = run_child(args, model, arch, patch, size)
                if row is None:
                    continue
                rows.append(row)
                last = row
                print(f"  {row['model']:8s} {row['arch']:14s} {size:>10s}: "
                      f"{row['time_s']:8.3f} s {row['peak_mem_mb']:9.1f} MB")
    fields = ['model', 'arch', 'size', 'pixels', 'device', 'dtype', 'time_s', 'peak_mem_mb',
              'gflops', 'gflops_per_s', 'mm_gflops_per_s', 'mm_efficiency']
    csv_path = os.path.join(args.out_dir, f'benchmark_{args.device.split(":")[0]}_'
                                          f'{args.dtype}.csv')
    with open(csv_path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    png_path = csv_path[:-4] + '.png'
    plot(rows, png_path)
    print(f'\nWrote {csv_path} and {png_path}')
    print_ratios(rows, skipped)


def print_ratios(rows: List[Dict], skipped: List[Dict]) -> None:
    index = {(r['model'], r['arch'], r['size']): r for r in rows}
    print('\nratios (other / xcit_dense; > 1 means xcit_dense is faster or smaller):')
    for (model, arch, size), row in sorted(index.items()):
        if model != 'xcit':
            continue
        if 'mm_efficiency' in row:
            print(f"  {arch} {size}: {row['gflops_per_s']:.1f} GFLOP/s, "
                  f"{100 * row['mm_efficiency']:.0f}% of torch.mm at the same sizes")
        for other in ('timm', 'vit'):
            o = index.get((other, arch, size))
            if o:
                print(f'  {arch} {size}: {other} time x{o["time_s"] / row["time_s"]:.2f}, '
                      f'memory x{o["peak_mem_mb"] / max(row["peak_mem_mb"], 1e-6):.2f}')
    print('\ngrowth from the smallest to each size (pixels ratio in brackets):')
    for model, arch in sorted({(r['model'], r['arch']) for r in rows}):
        pts = sorted((r['pixels'], r['time_s'], r['peak_mem_mb'], r['size']) for r in rows
                     if (r['model'], r['arch']) == (model, arch))
        p0, t0, m0, _ = pts[0]
        for p, t, m, size in pts[1:]:
            print(f'  {model} {arch} {size} (x{p / p0:.0f} pixels): time x{t / t0:.1f}, '
                  f'memory x{m / max(m0, 1e-6):.1f}')
    for s in skipped:
        print(f"  skipped {s['model']} {s['arch']} {s['size']}: estimated {s['estimated_s']} s")


if __name__ == '__main__':
    main()
