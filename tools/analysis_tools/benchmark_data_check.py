"""The pre-flight data check at COCO scale: its time and peak memory beside pycocotools'
``COCO(ann_file)`` and mmdet's ``CocoDataset`` (``lazy_init=False``, as the runner builds it).

    python tools/analysis_tools/benchmark_data_check.py --repeat 2 --clean-images
    python tools/analysis_tools/benchmark_data_check.py --images 20 --annotations 150 \\
        --root /tmp/tiny_coco --in-process                          # a quick smoke run

A COCO-sized annotation file is generated under ``--root`` (default ``data/bench_coco``,
git-ignored; reused when it already has the asked sizes): 118,287 images and 860,001 polygon
annotations of COCO's 80 categories, with COCO's fields and about COCO's polygon sizes (so about
460 MB of JSON, as instances_train2017.json), and one empty file per image (the check tests
existence only).

Measured, each in a fresh process: the data check cold (no validation stamp: the first run on
an annotation file version) and warm (the stamp the cold run wrote: every later run), see
:mod:`xcit_dense.engine.data_check`; the check as it was before (``json.load``, a ``stat`` per
image); pycocotools' ``COCO(ann_file)``; mmdet's ``CocoDataset``. Time is wall-clock and CPU
seconds (the best of ``--repeat`` runs); peak memory is the process's peak resident memory
(``ru_maxrss``) above its resident memory before the call; "held" is its resident memory after
the call returned (and a ``gc.collect()``) above the same baseline. ``--clean-images`` deletes
the image files afterwards (``--clean``: everything generated).
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# COCO's 80 category ids (1..90 with gaps), in mmdet's class order.
COCO_CAT_IDS = (list(range(1, 12)) + list(range(13, 26)) + [27, 28] + list(range(31, 45)) +
                list(range(46, 66)) + [67, 70] + list(range(72, 83)) + list(range(84, 91)))
COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich',
    'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch',
    'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book',
    'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush')
SPLIT = 'train2017'


def _polygon_pool(rng, size: int = 4096):
    """JSON text of ``size`` polygon lists (``[[x,y,...]]``, 2 decimals, one to three parts,
    about 24 points per annotation on average, as COCO's) and their areas."""
    pool = []
    for _ in range(size):
        parts = 1 + (rng.random() < 0.12) + (rng.random() < 0.03)
        points = np.clip(rng.lognormal(np.log(20), 0.6, parts).astype(int), 3, 400)
        text = ','.join('[' + ','.join(f'{v:.2f}' for v in rng.random(2 * n) * 640) + ']'
                        for n in points)
        pool.append(('[' + text + ']', round(float(rng.random() * 20000), 2)))
    return pool


def generate_coco(root: str, num_images: int = 118287, num_annotations: int = 860001,
                  seed: int = 0) -> str:
    """Write ``root/annotations/instances_train2017.json`` (COCO's fields, polygon masks, 1%
    crowd annotations with uncompressed RLE) and an empty ``root/train2017/<id>.jpg`` per
    image; returns the annotation file. Written in chunks, so memory stays small."""
    rng = np.random.default_rng(seed)
    ann_file = os.path.join(root, 'annotations', f'instances_{SPLIT}.json')
    img_dir = os.path.join(root, SPLIT)
    os.makedirs(os.path.dirname(ann_file), exist_ok=True)
    os.makedirs(img_dir, exist_ok=True)
    image_ids = np.sort(rng.choice(600000, num_images, replace=False)) + 1
    sizes = rng.choice([(640, 480), (480, 640), (640, 427), (500, 375), (640, 640)],
                       num_images)
    pool = _polygon_pool(rng)
    tmp = ann_file + '.tmp'
    with open(tmp, 'w') as f:
        f.write('{"info":{"description":"COCO-sized benchmark data","version":"1.0",'
                '"year":2017},"licenses":[{"url":"http://creativecommons.org/licenses/by/2.0/"'
                ',"id":1,"name":"Attribution License"}],"images":[')
        for start in range(0, num_images, 10000):
            chunk = []
            for k in range(start, min(start + 10000, num_images)):
                i, (w, h) = int(image_ids[k]), sizes[k]
                name = f'{i:012d}.jpg'
                chunk.append(
                    f'{{"license":1,"file_name":"{name}","coco_url":'
                    f'"http://images.cocodataset.org/{SPLIT}/{name}","height":{h},"width":{w},'
                    f'"date_captured":"2013-11-14 16:28:13","flickr_url":'
                    f'"http://farm4.staticflickr.com/3153/9970675537_fb6a8ebac5_z.jpg",'
                    f'"id":{i}}}')
                open(os.path.join(img_dir, name), 'wb').close()
            f.write((',' if start else '') + ','.join(chunk))
        f.write('],"annotations":[')
        owners = np.sort(rng.integers(0, num_images, num_annotations))
        for start in range(0, num_annotations, 20000):
            stop = min(start + 20000, num_annotations)
            picks = rng.integers(0, len(pool), stop - start)
            cats = rng.choice(COCO_CAT_IDS, stop - start)
            boxes = rng.random((stop - start, 4)) * [500, 300, 140, 180] + 1
            crowd = rng.random(stop - start) < 0.01
            chunk = []
            for k in range(stop - start):
                w, h = sizes[owners[start + k]]
                if crowd[k]:
                    counts = rng.integers(1, 3000, 40)
                    counts[-1] = w * h - counts[:-1].sum()
                    seg = f'{{"counts":[{",".join(map(str, counts))}],"size":[{h},{w}]}}'
                else:
                    seg = pool[picks[k]][0]
                x, y, bw, bh = boxes[k]
                chunk.append(
                    f'{{"segmentation":{seg},"area":{pool[picks[k]][1]},'
                    f'"iscrowd":{int(crowd[k])},"image_id":{image_ids[owners[start + k]]},'
                    f'"bbox":[{x:.2f},{y:.2f},{bw:.2f},{bh:.2f}],'
                    f'"category_id":{cats[k]},"id":{900100000000 + start + k}}}')
            f.write((',' if start else '') + ','.join(chunk))
        f.write('],"categories":[' + ','.join(
            f'{{"supercategory":"object","id":{i},"name":"{n}"}}'
            for i, n in zip(COCO_CAT_IDS, COCO_CLASSES)) + ']}')
    os.replace(tmp, ann_file)
    with open(os.path.join(root, 'sizes.json'), 'w') as f:
        json.dump(dict(images=num_images, annotations=num_annotations, seed=seed), f)
    return ann_file


def _has_data(root: str, num_images: int, num_annotations: int) -> bool:
    try:
        with open(os.path.join(root, 'sizes.json')) as f:
            sizes = json.load(f)
        return (sizes['images'] == num_images and sizes['annotations'] == num_annotations
                and os.path.isfile(os.path.join(root, 'annotations',
                                                f'instances_{SPLIT}.json'))
                and len(os.listdir(os.path.join(root, SPLIT))) == num_images)
    except (OSError, ValueError, KeyError):
        return False


def _dataset_cfg(root: str) -> dict:
    return dict(type='CocoDataset', data_root=os.path.join(root, ''),
                ann_file=f'annotations/instances_{SPLIT}.json',
                data_prefix=dict(img=f'{SPLIT}/'),
                filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline=[])


def _rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _prepare(what: str, root: str):
    """A function doing ``what``, its imports done (they are not measured)."""
    cfg = _dataset_cfg(root)
    ann_file = os.path.join(root, cfg['ann_file'])
    if what in ('check-cold', 'check-warm'):
        from xcit_dense.engine.data_check import check_coco_dataset

        def run():
            profile = {}
            check_coco_dataset(cfg, profile)
            return None, profile
    elif what == 'previous':  # the check before issue 13: json.load, one stat per image
        from xcit_dense.datasets.validate import load_coco_annotations

        def run():
            data = load_coco_annotations(ann_file)
            img_dir = os.path.join(root, SPLIT)
            absent = [i['file_name'] for i in data['images']
                      if not os.path.isfile(os.path.join(img_dir, i['file_name']))]
            assert not absent
            return None, {}
    elif what == 'coco':
        from pycocotools.coco import COCO

        def run():
            return COCO(ann_file), {}
    elif what == 'mmdet':
        from mmdet.datasets import CocoDataset
        kwargs = {k: v for k, v in cfg.items() if k != 'type'}

        def run():
            dataset = CocoDataset(**kwargs, lazy_init=False)
            return dataset, dict(images_kept=len(dataset))
    else:
        raise ValueError(what)
    return run


def measure(what: str, root: str, in_process: bool = False) -> dict:
    """Run ``what`` and measure it. In a fresh process (default): wall and CPU seconds, and
    resident memory (peak and held after) above the process's before the call. In this
    process (``in_process``, for quick smoke runs): the same times, and memory as
    tracemalloc's Python allocations (peak and held after)."""
    if not in_process:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--root', root,
                               '--measure', what], capture_output=True, text=True)
        results = [line for line in proc.stdout.splitlines() if line.startswith('RESULT ')]
        if proc.returncode != 0 or not results:
            raise RuntimeError(f'measuring {what} failed:\n{proc.stderr[-3000:]}')
        return json.loads(results[-1][len('RESULT '):])
    import gc
    import tracemalloc
    run = _prepare(what, root)
    gc.collect()
    tracemalloc.start()
    cpu, start = _cpu_s(), time.perf_counter()
    kept, profile = run()
    wall, cpu = time.perf_counter() - start, _cpu_s() - cpu
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    del kept
    return dict(wall=wall, cpu=cpu, peak=peak, held=held, profile=profile)


def _measure_here(what: str, root: str) -> None:
    """The child process of :func:`measure`: prints ``RESULT {json}``."""
    import gc
    run = _prepare(what, root)
    gc.collect()
    before = _rss_mb()
    cpu, start = _cpu_s(), time.perf_counter()
    kept, profile = run()
    wall, cpu = time.perf_counter() - start, _cpu_s() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    gc.collect()
    held = _rss_mb() - before
    print('RESULT ' + json.dumps(dict(wall=wall, cpu=cpu, peak=max(peak, 0.), held=held,
                                      profile=profile)))
    del kept


ROWS = {'check-cold': 'data check, cold (first run on a file version)',
        'check-warm': 'data check, warm (validation stamp)',
        'previous': 'previous data check (json.load, a stat per image)',
        'coco': 'pycocotools COCO(ann_file)',
        'mmdet': 'mmdet CocoDataset(lazy_init=False)'}


def format_table(results: dict, ann_file: str, size: int, num_images: int,
                 num_annotations: int, in_process: bool) -> str:
    memory = ('tracemalloc, Python allocations' if in_process else
              'resident memory above the fresh process\'s before the call')
    lines = [f'annotation file: {ann_file} ({size / 1e6:.1f} MB, '
             f'{num_images} images, {num_annotations} annotations; image files present)',
             f'time: wall-clock and CPU seconds, best of the repeats; memory (MB): {memory}; '
             f'held: still in use after the call returned and gc.collect()',
             '',
             '| measured | wall s | CPU s | peak MB | held MB | wall / COCO | wall / mmdet |',
             '|---|---:|---:|---:|---:|---:|---:|']
    coco, mmdet = results.get('coco'), results.get('mmdet')
    for key, label in ROWS.items():
        if key not in results:
            continue
        r = results[key]
        ratios = [f'{r["wall"] / ref["wall"]:.3f}' if ref else '-' for ref in (coco, mmdet)]
        lines.append(f'| {label} | {r["wall"]:.3f} | {r["cpu"]:.3f} | {r["peak"]:.1f} | '
                     f'{r["held"]:.1f} | {ratios[0]} | {ratios[1]} |')
    profile = results.get('check-cold', {}).get('profile') or {}
    steps = ', '.join(f'{k} {v:.3f} s' for k, v in profile.items()
                      if k not in ('cached',) and isinstance(v, float))
    if steps:
        lines += ['', f'cold data check, by step: {steps}']
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', default=os.path.join(ROOT, 'data', 'bench_coco'),
                        help='where the data is generated (default: data/bench_coco)')
    parser.add_argument('--images', type=int, default=118287)
    parser.add_argument('--annotations', type=int, default=860001)
    parser.add_argument('--repeat', type=int, default=1,
                        help='measure each this many times (fresh processes), keep the best')
    parser.add_argument('--skip', nargs='*', default=[], choices=list(ROWS),
                        help='measurements to leave out')
    parser.add_argument('--in-process', action='store_true',
                        help='measure in this process, memory with tracemalloc (smoke runs)')
    parser.add_argument('--clean-images', action='store_true',
                        help='delete the generated image files afterwards')
    parser.add_argument('--clean', action='store_true',
                        help='delete everything generated afterwards')
    parser.add_argument('--measure', choices=list(ROWS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:  # a child of measure()
        return _measure_here(args.measure, args.root)
    if not _has_data(args.root, args.images, args.annotations):
        shutil.rmtree(os.path.join(args.root, SPLIT), ignore_errors=True)
        start = time.perf_counter()
        generate_coco(args.root, args.images, args.annotations)
        print(f'generated {args.root} in {time.perf_counter() - start:.1f} s', flush=True)
    ann_file = os.path.join(args.root, 'annotations', f'instances_{SPLIT}.json')
    size = os.path.getsize(ann_file)
    if 'check-cold' in args.skip:  # the warm check reads the cold one's stamp
        args.skip.append('check-warm')
    stamps = tempfile.mkdtemp(prefix='data_check_stamps_')
    saved = os.environ.get('XCIT_DENSE_DATA_CHECK_CACHE')
    os.environ['XCIT_DENSE_DATA_CHECK_CACHE'] = stamps  # cold, then warm: not the user's
    results = {}
    try:
        for _ in range(args.repeat):
            for what in ROWS:
                if what in args.skip:
                    continue
                if what == 'check-cold':
                    for name in os.listdir(stamps):
                        os.remove(os.path.join(stamps, name))
                r = measure(what, args.root, args.in_process)
                print(f'{what}: {r["wall"]:.3f} s', file=sys.stderr, flush=True)
                if what not in results or r['wall'] < results[what]['wall']:
                    results[what] = r
    finally:
        shutil.rmtree(stamps, ignore_errors=True)
        if saved is None:
            os.environ.pop('XCIT_DENSE_DATA_CHECK_CACHE')
        else:
            os.environ['XCIT_DENSE_DATA_CHECK_CACHE'] = saved
        if args.clean:
            shutil.rmtree(args.root, ignore_errors=True)
        elif args.clean_images:
            shutil.rmtree(os.path.join(args.root, SPLIT), ignore_errors=True)
    print(format_table(results, ann_file, size, args.images, args.annotations,
                       args.in_process))
    return results


if __name__ == '__main__':
    main()
