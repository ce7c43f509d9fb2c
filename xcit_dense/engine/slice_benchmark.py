"""Whole image or slices: running ``tools/test.py`` each way on the large scenes and scoring
the predictions by object group, for ``tools/analysis_tools/benchmark_slicing.py``.

Each way is one ``tools/test.py`` process (:func:`run_test_tool`): its time per scene comes
from the test loop's own log, its peak memory is the process's maximum resident set (a fresh
process per way, so one way's memory never shows in another's). Detection is scored by
:func:`box_and_mask_map` with pycocotools on the COCO results the tool writes
(``--json-prefix``): mAP over all objects and over groups (objects that a slice grid cuts, large
objects), where the objects outside a group are marked crowd, so detections of them count
neither way.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..datasets.large_scenes import object_boxes
from ..slice_grid import cut_by_windows, slice_windows

LARGE_SIDE = 512  # objects with a box side over this are "large": no 512 slice holds them


def way_arguments(way: str, overlap: float) -> List[str]:
    """``tools/test.py`` options of a way: 'whole' (native resolution), 'sliced-SIZE' (SAHI's
    merge), 'sliced-SIZE-nms' (NMS instead), or 'downscaled' (the config's test resize)."""
    if way == 'whole':
        return ['--resolution', 'native']
    if way == 'downscaled':
        return []
    parts = way.split('-')
    if parts[0] == 'sliced' and len(parts) in (2, 3) and parts[1].isdigit() and \
            parts[2:] in ([], ['nms']):
        return ['--slice', parts[1], '--overlap', str(overlap)] + (
            ['--slice-merge', 'nms'] if parts[2:] else [])
    raise ValueError(f"a way is 'whole', 'downscaled', 'sliced-SIZE' or 'sliced-SIZE-nms', "
                     f'got {way!r}')


def slice_size_of(way: str) -> Optional[int]:
    """The slice size of a 'sliced-SIZE[-nms]' way, None for the others."""
    return int(way.split('-')[1]) if way.startswith('sliced-') else None


def run_test_tool(config: str, checkpoint: str, options: Sequence[str], work_dir: str,
                  cfg_options: Sequence[str] = ()) -> Dict:
    """Run ``tools/test.py`` in a fresh process; returns its last logged metrics (with the test
    loop's ``time`` per iteration), its wall time and its peak resident memory in GB. A
    failed run raises ``RuntimeError`` with the end of its output."""
    tool = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools',
                    'test.py')
    command = [sys.executable, tool, config, checkpoint, '--work-dir', work_dir, *options]
    if cfg_options:
        command += ['--cfg-options', *cfg_options]
    os.makedirs(work_dir, exist_ok=True)
    log = osp.join(work_dir, 'tool_output.log')
    start = time.perf_counter()
    with open(log, 'w') as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        why = f'killed by signal {-code}' + (' (out of memory?)' if code == -9 else '') \
            if code < 0 else f'exit status {code}'
        raise RuntimeError(f"{' '.join(command)} failed ({why}):\n{tail}")
    runs = sorted(glob.glob(osp.join(work_dir, '2*', '2*.json')))
    with open(runs[-1]) as f:
        metrics = json.loads(f.read().strip().splitlines()[-1])
    return dict(metrics=metrics, wall_s=wall, peak_gb=usage.ru_maxrss * 1024 / 1e9)


def object_groups(annotations: Sequence[Dict], image_sizes: Dict[int, tuple],
                  slice_sizes: Sequence[int], overlap: float) -> Dict[str, set]:
    """Annotation ids by group: 'all', 'large' (a box side over 512 pixels: no 512 slice
    holds it) and 'cut-SIZE' (the other objects that a border of the slices of SIZE of their
    image cuts)."""
    groups = {'all': {a['id'] for a in annotations}, 'large': set()}
    for size in slice_sizes:
        groups[f'cut-{size}'] = set()
    for image_id, (height, width) in image_sizes.items():
        anns = [a for a in annotations if a['image_id'] == image_id]
        boxes = object_boxes(anns)
        large = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) > LARGE_SIDE
        groups['large'] |= {a['id'] for a, big in zip(anns, large) if big}
        for size in slice_sizes:
            cut = cut_by_windows(boxes, slice_windows(height, width, size, overlap)) & ~large
            groups[f'cut-{size}'] |= {a['id'] for a, c in zip(anns, cut) if c}
    return groups


def coco_map(gt: Dict, results: List[Dict], iou_type: str, group: Optional[set] = None
             ) -> Optional[float]:
    """COCO mAP (IoU 0.5:0.95, up to 1000 detections per image, as mmdet's CocoMetric) of
    ``results`` against the ground truth ``gt`` (a COCO dict); with ``group``, only those
    annotation ids count (the others are crowd: detections of them are ignored). None when
    the group is empty; 0 when there are no results."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    annotations = [dict(a, iscrowd=int(group is not None and a['id'] not in group))
                   for a in gt['annotations']]
    if not any(a['iscrowd'] == 0 for a in annotations):
        return None
    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dict(gt, annotations=annotations)
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), iou_type)
        evaluation.params.maxDets = [100, 300, 1000]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def box_and_mask_map(gt_file: str, results_prefix: str, slice_sizes: Sequence[int],
                     overlap: float) -> Dict[str, Optional[float]]:
    """'bbox/GROUP' and 'segm/GROUP' mAP (:func:`coco_map`) of the results ``tools/test.py
    --json-prefix PREFIX`` wrote, for every group of :func:`object_groups`."""
    with open(gt_file) as f:
        gt = json.load(f)
    sizes = {i['id']: (i['height'], i['width']) for i in gt['images']}
    groups = object_groups(gt['annotations'], sizes, slice_sizes, overlap)
    scores = {}
    for iou_type in ('bbox', 'segm'):
        path = f'{results_prefix}.{iou_type}.json'
        results = json.load(open(path)) if osp.exists(path) else []
        for name, group in groups.items():
            scores[f'{iou_type}/{name}'] = coco_map(gt, results, iou_type,
                                                    None if name == 'all' else group)
    scores.update({f'objects/{name}': len(group) for name, group in groups.items()})
    return scores


def colour_labels(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """A label map as an RGB picture (labels outside the palette black)."""
    colours = np.zeros((256, 3), dtype=np.uint8)
    colours[:len(palette)] = np.asarray(palette, dtype=np.uint8)
    return colours[np.clip(labels, 0, 255)]
