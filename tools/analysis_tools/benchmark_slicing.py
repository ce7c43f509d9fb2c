"""Whole image or slices? The demo detector and segmentor on the large scenes, each way:
whole at the scene's own resolution, sliced (512 and 1024 px, overlap 0.2) and downscaled by
the config's test resize. Box and mask mAP (all objects, those a slice grid cuts, the large
ones), mIoU, time per scene and peak memory, as a table and a figure.

    python tools/make_toy_data.py large-scenes data/large_scenes
    python tools/analysis_tools/benchmark_slicing.py \\
        --det-checkpoint $(cat work_dirs/demo_det/last_checkpoint) \\
        --seg-checkpoint $(cat work_dirs/demo_seg/last_checkpoint)

(``make benchmark-slicing`` does all of it, training the demo models first if needed;
``--scene-sizes 1024 2048 3072 4096`` measures the ways against the scene's size instead.) Every
way is one run of ``tools/test.py`` in a fresh process (:mod:`xcit_dense.engine.
slice_benchmark`): "s/scene" is its test loop's time per scene (loading the image included),
"peak GB" the process's maximum resident memory (runtime, model and data included). Writes
OUT.csv, OUT.md (the table) and OUT.png (a corner of the first scene, the ways side by side,
the borders of the 512 slices dashed).
"""
import argparse
import csv
import json
import os
import os.path as osp
from typing import Dict, List

import numpy as np

from xcit_dense.datasets import generate_large_scenes
from xcit_dense.engine import short_errors
from xcit_dense.engine.slice_benchmark import (box_and_mask_map, colour_labels, run_test_tool,
                                               slice_size_of, way_arguments)

DET_CONFIG = 'configs/toy/mask-rcnn_xcit-n12-p8_fpn-64_toy-large-scenes.py'
SEG_CONFIG = 'configs/toy/fpn_xcit-n12-p8_toy-large-scenes.py'
WAYS = ['whole', 'sliced-512', 'sliced-512-nms', 'sliced-1024', 'downscaled']
RESULTS = osp.join(osp.dirname(osp.abspath(__file__)), 'results', 'slicing_toy_cpu')
FIGURE_WAYS = ['whole', 'sliced-512', 'downscaled']
COLUMNS = [('box mAP', 'bbox/all'), ('box, cut by 512', 'bbox/cut-512'),
           ('box, cut by 1024', 'bbox/cut-1024'), ('box, large', 'bbox/large'),
           ('mask mAP', 'segm/all'), ('mask, cut by 512', 'segm/cut-512'),
           ('mask, cut by 1024', 'segm/cut-1024'), ('mask, large', 'segm/large'),
           ('det s/scene', 'det/s_per_scene'), ('det peak GB', 'det/peak_gb'),
           ('mIoU', 'seg/mIoU'), ('seg s/scene', 'seg/s_per_scene'),
           ('seg peak GB', 'seg/peak_gb')]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--det-config', default=DET_CONFIG)
    parser.add_argument('--det-checkpoint', help='the detector (omit to skip detection)')
    parser.add_argument('--seg-config', default=SEG_CONFIG)
    parser.add_argument('--seg-checkpoint', help='the segmentor (omit to skip segmentation)')
    parser.add_argument('--data', default='data/large_scenes',
                        help='tools/make_toy_data.py large-scenes output')
    parser.add_argument('--ways', nargs='+', default=WAYS, metavar='WAY',
                        help='whole, downscaled, sliced-SIZE (SAHI\'s merge) or sliced-SIZE-nms '
                        '(default: %(default)s)')
    parser.add_argument('--overlap', type=float, default=0.2)
    parser.add_argument('--work-dir', default='work_dirs/benchmark_slicing')
    parser.add_argument('--out', default=RESULTS, help='write OUT.csv, OUT.md and OUT.png')
    parser.add_argument('--scene-sizes', type=int, nargs='+', metavar='PIXELS',
                        help='instead: generate scenes of each size (16.8 MP of them per size) '
                        'and run the ways on each; writes OUT_by_size.csv and .md')
    return parser.parse_args()


def run_detection(args, way: str, slice_sizes: List[int]) -> Dict:
    work_dir = osp.join(args.work_dir, 'det', way)
    prefix = osp.join(work_dir, 'results')
    gt_file = osp.join(args.data, 'annotations', 'instances.json')
    run = run_test_tool(args.det_config, args.det_checkpoint,
                        [*way_arguments(way, args.overlap), '--json-prefix', prefix], work_dir,
                        [f'test_dataloader.dataset.data_root={args.data}/',
                         f'test_evaluator.ann_file={gt_file}'])
    row = box_and_mask_map(gt_file, prefix, slice_sizes, args.overlap)
    row.update({'det/s_per_scene': run['metrics']['time'], 'det/peak_gb': run['peak_gb'],
                'det/wall_s': run['wall_s']})
    return row


def run_segmentation(args, way: str) -> Dict:
    if way.endswith('-nms'):
        return {}  # a detection merge: segmentation slices are merged by mmseg's slide
    work_dir = osp.join(args.work_dir, 'seg', way)
    options = way_arguments(way, args.overlap)
    if way in FIGURE_WAYS:
        options += ['--out', osp.join(work_dir, 'results.pkl')]
    run = run_test_tool(args.seg_config, args.seg_checkpoint, options, work_dir,
                        [f'test_dataloader.dataset.data_root={args.data}'])
    return {'seg/mIoU': run['metrics']['mIoU'], 'seg/aAcc': run['metrics']['aAcc'],
            'seg/s_per_scene': run['metrics']['time'], 'seg/peak_gb': run['peak_gb'],
            'seg/wall_s': run['wall_s']}


def _cell(value) -> str:
    if value is None:
        return '-'
    return f'{value:.3f}' if isinstance(value, float) and abs(value) <= 1 else (
        f'{value:.1f}' if isinstance(value, float) else str(value))


def write_table(rows: Dict[str, Dict], out: str) -> str:
    columns = [(name, key) for name, key in COLUMNS if any(key in r for r in rows.values())]
    keys = sorted({k for r in rows.values() for k in r})
    with open(out + '.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['way', *keys])
        for way, row in rows.items():
            writer.writerow([way, *[row.get(k) for k in keys]])
    lines = ['| way | ' + ' | '.join(name for name, _ in columns) + ' |',
             '|---|' + '---|' * len(columns)]
    lines += [f'| {way} | ' + ' | '.join(_cell(row.get(key)) for _, key in columns) + ' |'
              for way, row in rows.items()]
    first = next(iter(rows.values()))
    counts = {k.partition('/')[2]: v for k, v in first.items() if k.startswith('objects/')}
    if counts:
        lines.append('')
        lines.append('Objects: ' + ', '.join(f'{n} {name}' for name, n in counts.items()))
    table = '\n'.join(lines) + '\n'
    with open(out + '.md', 'w') as f:
        f.write(table)
    return table


def draw_figure(args, out: str, tasks: List[str], crop: int = 1280) -> None:
    """The first scene's top-left ``crop`` pixels, one panel per way (detection: masks and
    boxes scored 0.3 or more; segmentation: the label map), 512-slice borders dashed."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import mmengine
    import pycocotools.mask as mask_util
    from PIL import Image

    from xcit_dense.datasets.shapes import SHAPES
    from xcit_dense.slice_grid import slice_windows
    ways = [w for w in FIGURE_WAYS if w in args.ways]
    scene_file = sorted(os.listdir(osp.join(args.data, 'images')))[0]
    image = np.asarray(Image.open(osp.join(args.data, 'images', scene_file)).convert('RGB'))
    height, width = image.shape[:2]
    crop = min(crop, height, width)
    palette = np.array([(220, 20, 60), (0, 130, 230), (250, 170, 30), (120, 60, 200)])
    borders = sorted({v for x1, y1, x2, y2 in slice_windows(height, width, 512, args.overlap)
                      for v in (x1, x2) if 0 < v < crop})
    fig, axes = plt.subplots(len(tasks), len(ways), figsize=(6 * len(ways), 6 * len(tasks)),
                             squeeze=False)
    for row, task in enumerate(tasks):
        for col, way in enumerate(ways):
            ax = axes[row][col]
            panel = image[:crop, :crop].astype(np.float32)
            if task == 'det':
                results = json.load(open(osp.join(args.work_dir, 'det', way,
                                                  'results.segm.json')))
                boxes = []
                n_scored = sum(r['image_id'] == 1 and r['score'] >= 0.3 for r in results)
                for r in results:
                    if r['image_id'] != 1 or r['score'] < 0.3 or \
                            r['bbox'][0] > crop or r['bbox'][1] > crop:
                        continue
                    m = mask_util.decode(r['segmentation'])[:crop, :crop].astype(bool)
                    panel[m] = 0.5 * panel[m] + 0.5 * palette[r['category_id'] - 1]
                    boxes.append((r['bbox'], palette[r['category_id'] - 1] / 255))
                ax.imshow(panel.astype(np.uint8))
                for (x, y, w, h), colour in boxes:
                    ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, lw=0.8,
                                               edgecolor=colour))
                ax.set_title(f'Mask R-CNN, {way}: {n_scored} in the scene scored >= 0.3')
            else:
                samples = mmengine.load(osp.join(args.work_dir, 'seg', way, 'results.pkl'))
                labels = samples[0]['pred_sem_seg']['data'][0].numpy()[:crop, :crop]
                colours = colour_labels(labels + 1, [(0, 0, 0), (200, 200, 200),
                                                     *[tuple(c) for c in palette[:3]]])
                ax.imshow((0.4 * panel + 0.6 * colours).astype(np.uint8))
                ax.set_title(f'Semantic FPN, {way}')
            for v in borders:
                ax.axvline(v, color='white', ls='--', lw=0.8)
                ax.axhline(v, color='white', ls='--', lw=0.8)
            ax.set_xlim(0, crop)
            ax.set_ylim(crop, 0)
            ax.axis('off')
    fig.suptitle(f'{scene_file} ({width}x{height}), top-left {crop} px; dashed: borders of '
                 f'the 512 px slices (overlap {args.overlap}); classes: '
                 + ', '.join(SHAPES))
    fig.tight_layout()
    fig.savefig(out + '.png', dpi=80)
    plt.close(fig)


def run_ways(args, tasks: List[str], work_dir: str) -> Dict[str, Dict]:
    """Every way of ``args.ways`` on the scenes of ``args.data``: a table row per way."""
    slice_sizes = sorted({slice_size_of(w) for w in args.ways if slice_size_of(w)} | {512, 1024})
    rows = {}
    for way in args.ways:
        row = {}
        run_args = argparse.Namespace(**dict(vars(args), work_dir=work_dir))
        if 'det' in tasks:
            row.update(run_detection(run_args, way, slice_sizes))
        if 'seg' in tasks:
            row.update(run_segmentation(run_args, way))
        rows[way] = row
        print(way, json.dumps({k: round(v, 4) if isinstance(v, float) else v
                               for k, v in row.items()}), flush=True)
    return rows


def main():
    args = parse_args()
    tasks = [t for t, ckpt in (('det', args.det_checkpoint), ('seg', args.seg_checkpoint))
             if ckpt]
    if not tasks:
        raise SystemExit('give --det-checkpoint and/or --seg-checkpoint')
    for way in args.ways:
        way_arguments(way, args.overlap)  # a wrong way fails before any run
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    if args.scene_sizes:
        # the same pixels (and about as many objects) at every size: 16.8 MP of scenes
        rows = {}
        for size in args.scene_sizes:
            data = osp.join(args.work_dir, f'scenes_{size}')
            generate_large_scenes(data, max(1, round((4096 / size) ** 2)), size, seed=0)
            sized = run_ways(argparse.Namespace(**dict(vars(args), data=data)), tasks,
                             osp.join(args.work_dir, f'size_{size}'))
            rows.update({f'{size} px, {way}': row for way, row in sized.items()})
        print(write_table(rows, args.out + '_by_size'))
        print(f'wrote {args.out}_by_size.csv, {args.out}_by_size.md')
        return
    rows = run_ways(args, tasks, args.work_dir)
    print(write_table(rows, args.out))
    if any(w in args.ways for w in FIGURE_WAYS):
        draw_figure(args, args.out, tasks)
    print(f'wrote {args.out}.csv, {args.out}.md, {args.out}.png')


if __name__ == '__main__':
    with short_errors(os.path.basename(__file__)):
        main()
