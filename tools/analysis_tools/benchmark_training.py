"""Training step time and peak memory: timm's Xcit, this package's XCiT plain, with selective
recomputation and with whole-block checkpointing (``with_cp``); the backbone alone and the whole
Mask R-CNN and Semantic FPN; and the largest square image a Mask R-CNN training step fits in a
memory budget with each option.

    python tools/analysis_tools/benchmark_training.py                     # CPU, fp32
    python tools/analysis_tools/benchmark_training.py --dtype bf16        # under bf16 autocast
    python tools/analysis_tools/benchmark_training.py --device cuda

A step is forward, backward and an AdamW step (:mod:`xcit_dense.engine.train_benchmark`); time
is the median of ``--runs`` steps after ``--warmup``; peak is the allocator's (CUDA's
``max_memory_allocated``, on the CPU the profiler's allocation records), parameters and
optimizer state included. Every measurement runs in a fresh process. The largest image is
where a least-squares line of Mask R-CNN's peak against pixels, through ``--fit-sides``,
reaches ``--budget-gb``. Writes OUT.csv, OUT.md and OUT.png.
"""
import argparse
import csv
import json
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional

RESULTS = osp.join(osp.dirname(osp.abspath(__file__)), 'results')
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODELS = {  # whole models at their training crops: config, (height, width), batch per GPU
    'mask-rcnn': ('configs/mask_rcnn/mask-rcnn_xcit-s12-p8_fpn_ms-crop-1x_coco.py', (800, 1333), 2),
    'sem-fpn': ('configs/sem_fpn/fpn_xcit-s12-p8_8xb2-80k_ade20k-512x512.py', (512, 512), 2),
}
OPTIONS = ['timm', 'plain', 'selective', 'with_cp']


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='fp32', choices=['fp32', 'bf16', 'fp16'])
    parser.add_argument('--options', nargs='+', default=OPTIONS, choices=OPTIONS)
    parser.add_argument('--arch', default='s12')
    parser.add_argument('--patch-size', type=int, default=8)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--sizes', nargs='*', default=['512x512', '1024x1024', '800x1333'],
                        help='backbone input sizes, HxW')
    parser.add_argument('--models', nargs='*', default=list(MODELS), choices=list(MODELS))
    parser.add_argument('--fit-sides', nargs='*', type=int, default=[384, 512, 640],
                        help='square sides at which Mask R-CNN (batch 1) is measured for the '
                        'largest-image fit (none to skip)')
    parser.add_argument('--budget-gb', type=float, default=24.)
    parser.add_argument('--paired-rounds', type=int, default=6,
                        help='rounds of the backbone options taking turns in one process '
                        '(0 to skip)')
    parser.add_argument('--paired-size', default='512x512', help='their input size, HxW')
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--out', help='OUT.csv/.md/.png (default: results/training_DEVICE_DTYPE)')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    return parser.parse_args()


def child(spec: Dict) -> Dict:
    """One measurement, in this (fresh) process."""
    import torch

    import xcit_dense  # noqa: F401  (registers the backbones)
    from xcit_dense.engine import train_benchmark as tb
    device, dtype = spec['device'], spec['dtype']
    height, width = spec['height'], spec['width']
    if spec['part'] == 'gradients':  # each option's gradients against the plain path's
        torch.manual_seed(0)
        x = torch.randn(spec['batch'], 3, height, width, dtype=torch.float64).float()
        plain, plain_forward = tb.backbone_model('plain', spec['arch'], spec['patch_size'])
        forwards = {plain: plain_forward}

        def loss(model):
            model.train()
            return sum(o.square().mean() for o in forwards[model](x))
        diffs = {}
        for option in spec['options']:
            model, forwards[model] = tb.backbone_model(option, spec['arch'], spec['patch_size'])
            diffs[option] = tb.gradient_difference(plain, model, loss)
        return dict(spec, gradient_difference=diffs)
    if spec['part'] == 'paired':  # the options' steps taking turns in this process
        steps = {}
        for option in spec['options']:
            model, forward = tb.backbone_model(option, spec['arch'], spec['patch_size'])
            x = torch.randn(spec['batch'], 3, height, width, device=device)
            steps[option], _ = tb.backbone_step(model.to(device), forward, x, dtype)
        return dict(spec, paired=tb.paired_times(steps, spec['rounds'], device))
    if spec['part'] == 'backbone':
        model, forward = tb.backbone_model(spec['option'], spec['arch'], spec['patch_size'])
        model.to(device)
        x = torch.randn(spec['batch'], 3, height, width, device=device)
        step, optimizer = tb.backbone_step(model, forward, x, dtype)
    else:
        config = MODELS[spec['model']][0]
        model, step, optimizer = tb.config_model_step(config, spec['option'], spec['batch'],
                                                      height, width, device, dtype)
    row = tb.measure_step(step, lambda: tb.held_bytes(model, optimizer), device,
                          spec['runs'], spec['warmup'])
    return dict(spec, **row)


def run_child(spec: Dict) -> Optional[Dict]:
    proc = subprocess.run([sys.executable, __file__, '--child', json.dumps(spec)],
                          capture_output=True, text=True, cwd=ROOT)
    what = f"{spec['part']} {spec.get('model', '')} {spec['option']} " \
           f"{spec['height']}x{spec['width']} batch {spec['batch']}"
    if proc.returncode != 0:
        reason = 'killed (out of memory?)' if proc.returncode in (-9, 137) else \
            proc.stderr.strip()[-400:]
        print(f'{what}: failed: {reason}', flush=True)
        return None
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    if 'gradient_difference' in row:
        print(f"{what}: gradients against plain {row['gradient_difference']}", flush=True)
    elif 'paired' in row:
        print(f"{what}: taking turns {row['paired']}", flush=True)
    else:
        print(f"{what}: {row['time_s']:.2f} s, {row['peak_gb']:.2f} GB", flush=True)
    return row


def write_table(rows: List[Dict], largest: Dict[str, Optional[float]], path: str,
                budget_gb: float, grads: Optional[Dict] = None,
                paired: Optional[Dict] = None) -> None:
    plain = {(r['part'], r['model'], r['height'], r['width']): r for r in rows
             if r['option'] == 'plain' and r['part'] != 'fit'}
    lines = ['| part | size | batch | option | time s | peak GB | time / plain | peak / plain |',
             '|---|---|---|---|---|---|---|---|'] if rows else []
    for r in rows:
        if r['part'] == 'fit':
            continue
        ref = plain.get((r['part'], r['model'], r['height'], r['width']))
        ratio = (lambda k: f"{r[k] / ref[k]:.2f}") if ref else (lambda k: '-')
        lines.append(f"| {r['model'] or r['part']} | {r['height']}x{r['width']} | {r['batch']} "
                     f"| {r['option']} | {r['time_s']:.2f} | {r['peak_gb']:.3f} "
                     f"| {ratio('time_s')} | {ratio('peak_gb')} |")
    if largest:
        lines += ['', f'Largest square Mask R-CNN training image (batch 1) in {budget_gb:g} GB, '
                  'from the fit:', '', '| option | side px | megapixels |', '|---|---|---|']
        for option, side in largest.items():
            lines.append(f'| {option} | {side:.0f} | {side * side / 1e6:.2f} |' if side
                         else f'| {option} | - | - |')
    if paired:
        lines += [''] * bool(lines) + [
            f"Backbone steps taking turns in one process, {paired['height']}x"
            f"{paired['width']}, batch {paired['batch']}, {paired['rounds']} rounds: "
            'median time, and median ratio to plain in the same round:', '',
            '| option | time s | time / plain |', '|---|---|---|']
        lines += [f"| {o} | {v['time_s']:.2f} | {v['ratio']:.3f} |"
                  for o, v in paired['paired'].items()]
    if grads:
        lines += ['', f"Gradients against the plain path's, every parameter, {grads['arch']}/"
                  f"{grads['patch_size']} at {grads['height']}x{grads['width']}, batch "
                  f"{grads['batch']}, fp32 (largest relative difference): " + ', '.join(
                      f'{o} {d:.1e}' for o, d in grads['gradient_difference'].items())]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def plot(rows: List[Dict], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    backbone = [r for r in rows if r['part'] == 'backbone']
    sizes = list(dict.fromkeys(f"{r['height']}x{r['width']}" for r in backbone))
    options = list(dict.fromkeys(r['option'] for r in backbone))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(len(options), 1)
    for k, option in enumerate(options):
        for ax, key in zip(axes, ('time_s', 'peak_gb')):
            values = [next((r[key] for r in backbone if r['option'] == option
                            and f"{r['height']}x{r['width']}" == s), 0) for s in sizes]
            ax.bar([i + k * width for i in range(len(sizes))], values, width, label=option)
    for ax, ylabel in zip(axes, ('step time (s)', 'peak memory (GB)')):
        ax.set_xticks([i + width * (len(options) - 1) / 2 for i in range(len(sizes))], sizes)
        ax.set_ylabel(ylabel)
        ax.set_xlabel('backbone input (batch 2)')
    axes[0].legend()
    fig.suptitle('XCiT training step: forward, backward, AdamW')
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    args = parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    from xcit_dense.engine.train_benchmark import largest_square
    out = args.out or osp.join(RESULTS, f'training_{args.device.split(":")[0]}_{args.dtype}')
    common = dict(device=args.device, dtype=args.dtype, arch=args.arch,
                  patch_size=args.patch_size, runs=args.runs, warmup=args.warmup, model='')
    grads = run_child(dict(common, part='gradients', option='all', batch=args.batch,
                           height=224, width=224,
                           options=[o for o in args.options if o != 'plain']))
    paired = None
    if args.paired_rounds:
        height, width = (int(v) for v in args.paired_size.split('x'))
        options = ['plain'] + [o for o in args.options if o != 'plain']
        paired = run_child(dict(common, part='paired', option='all', batch=args.batch,
                                height=height, width=width, options=options,
                                rounds=args.paired_rounds))
    rows = []
    for size in args.sizes:
        height, width = (int(v) for v in size.split('x'))
        for option in args.options:
            rows.append(run_child(dict(common, part='backbone', option=option,
                                       batch=args.batch, height=height, width=width)))
    for name in args.models:
        _, (height, width), batch = MODELS[name]
        for option in args.options:
            if option != 'timm':
                rows.append(run_child(dict(common, part='model', model=name, option=option,
                                           batch=batch, height=height, width=width)))
    largest = {}
    for option in (o for o in args.options if o != 'timm') if args.fit_sides else ():
        fit = [run_child(dict(common, part='fit', model='mask-rcnn', option=option, batch=1,
                              height=side, width=side, runs=1)) for side in args.fit_sides]
        fit = [r for r in fit if r]
        rows += fit
        largest[option] = largest_square([r['height'] for r in fit],
                                         [r['peak_gb'] for r in fit], args.budget_gb)
    rows = [r for r in rows if r]
    with open(out + '.csv', 'w', newline='') as f:
        fields = ['part', 'model', 'option', 'height', 'width', 'batch', 'device', 'dtype',
                  'time_s', 'peak_gb']
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)
    write_table(rows, largest, out + '.md', args.budget_gb, grads, paired)
    if any(r['part'] == 'backbone' for r in rows):
        plot(rows, out + '.png')
    print(open(out + '.md').read())


if __name__ == '__main__':
    main()
