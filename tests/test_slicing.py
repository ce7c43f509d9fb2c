"""Sliced inference (``--slice``) and the large scenes it is measured on: where slices lie, the
merge of an object's pieces, mmseg's slide stitching, the large-scene generator, the options'
checks, the API against its reference, and the slicing benchmark on models that predict the
ground truth or nothing right (xcit_dense.testing.oracles)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData, PixelData
from mmseg.structures import SegDataSample
from PIL import Image
from scipy import ndimage

import xcit_dense  # noqa: F401
from xcit_dense.datasets import generate_large_scenes
from xcit_dense.engine import UsageError
from xcit_dense.engine.inference import build_inferencer, predict, run_inference
from xcit_dense.engine.resolution import Resolution, parse_resolution, set_test_resolution
from xcit_dense.engine.slicing import Slicing, parse_slicing, set_test_slicing
from xcit_dense.slice_grid import cut_by_windows, held_by_no_window, slice_windows
from xcit_dense.sliced_det import merge_slices
from xcit_dense.testing.checkpoints import save_model_checkpoint
from xcit_dense.testing.oracles import GroundTruthSegmentor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET_CONFIG = os.path.join(ROOT, 'configs/toy/mask-rcnn_xcit-n12-p8_fpn-64_toy-shapes.py')
LARGE_DET = os.path.join(ROOT, 'configs/toy/mask-rcnn_xcit-n12-p8_fpn-64_toy-large-scenes.py')
LARGE_SEG = os.path.join(ROOT, 'configs/toy/fpn_xcit-n12-p8_toy-large-scenes.py')


@pytest.mark.parametrize('height, width, size, overlap', [
    (3072, 3072, 512, 0.2), (1000, 1700, 512, 0.2), (777, 513, 256, 0.5), (300, 200, 512, 0.2),
    (1024, 1024, 1024, 0.2)])
def test_slices_cover_the_image_exactly_once_at_their_centres(height, width, size, overlap):
    """Every window lies inside the image and has the slice's size (or the image's, when
    smaller); neighbours share at least ``int(overlap * size)`` pixels; and the windows' centre
    parts (each cut halfway into the overlaps with its neighbours) cover every pixel exactly
    once."""
    windows = slice_windows(height, width, size, overlap)
    for x1, y1, x2, y2 in windows:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert (x2 - x1, y2 - y1) == (min(size, width), min(size, height))
    coverage = np.zeros((height, width), dtype=np.int32)
    centres = np.zeros((height, width), dtype=np.int32)

    def cuts(starts, extent):
        """Boundaries between the centre parts of windows starting at ``starts``."""
        starts = sorted(set(starts))
        ends = [s + min(size, extent) for s in starts]
        for (s0, e0), s1 in zip(zip(starts, ends), starts[1:]):
            assert e0 - s1 >= int(overlap * size), 'neighbours share too little'
        return dict(zip(starts, [0] + [(s1 + e0) // 2 for e0, s1 in zip(ends, starts[1:])]
                        + [extent]))

    xs, ys = cuts([w[0] for w in windows], width), cuts([w[1] for w in windows], height)
    x_order, y_order = sorted(xs), sorted(ys)
    for x1, y1, x2, y2 in windows:
        coverage[y1:y2, x1:x2] += 1
        cx = x_order.index(x1)
        cy = y_order.index(y1)
        left = xs[x1]
        right = xs[x_order[cx + 1]] if cx + 1 < len(x_order) else width
        top = ys[y1]
        bottom = ys[y_order[cy + 1]] if cy + 1 < len(y_order) else height
        assert x1 <= left < right <= x2 and y1 <= top < bottom <= y2
        centres[top:bottom, left:right] += 1
    assert coverage.min() >= 1
    assert (centres == 1).all()
    assert len(windows) == len(x_order) * len(y_order)


def test_objects_cut_by_slices_are_told_from_whole_ones():
    windows = [(0, 0, 512, 512), (410, 0, 922, 512)]
    boxes = np.array([[100, 100, 150, 150],   # inside the first only
                      [420, 100, 470, 150],   # inside both: held whole, and cut by neither
                      [490, 100, 540, 150],   # cut by the first, whole in the second
                      [380, 100, 440, 150],   # cut by the second, whole in the first
                      [300, 100, 1000, 150]])  # cut by both, held by neither
    assert cut_by_windows(boxes, windows).tolist() == [False, False, True, True, True]
    assert held_by_no_window(boxes, windows).tolist() == [False, False, False, False, True]


def _instances(boxes, scores, labels, masks):
    inst = InstanceData()
    inst.bboxes = torch.tensor(boxes, dtype=torch.float32)
    inst.scores = torch.tensor(scores)
    inst.labels = torch.tensor(labels)
    inst.masks = torch.from_numpy(np.stack(masks))
    return inst


def test_the_merge_joins_an_object_that_a_slice_border_cuts():
    """An object 100 px wide crosses the 40 px overlap of two slices: each slice sees a piece.
    SAHI's greedy merging makes them one instance with the object's box and mask (nms keeps
    both pieces, 0.4 IoU apart); an object of another class on it stays apart."""
    height, width = 100, 200
    full = np.zeros((height, width), dtype=bool)
    full[20:60, 50:150] = True
    other = np.zeros((height, width), dtype=bool)
    other[20:60, 100:110] = True
    left, right = (0, 0, 120, 100), (80, 0, 200, 100)
    pieces = [
        (left, _instances([[50, 20, 120, 60], [100, 20, 110, 60]], [0.9, 0.8], [0, 1],
                          [full[:, :120], other[:, :120]])),
        (right, _instances([[0, 20, 70, 60]], [0.7], [0], [full[:, 80:]])),
    ]
    merged = merge_slices(pieces, height, width)
    assert merged.labels.tolist() == [0, 1]
    assert merged.bboxes.tolist() == [[50, 20, 150, 60], [100, 20, 110, 60]]
    assert merged.scores.tolist() == pytest.approx([0.9, 0.8])
    assert torch.equal(merged.masks[0], torch.from_numpy(full))
    assert torch.equal(merged.masks[1], torch.from_numpy(other))
    by_nms = merge_slices(pieces, height, width, merge='nms')
    assert by_nms.bboxes.tolist() == [[50, 20, 120, 60], [100, 20, 110, 60], [80, 20, 150, 60]]


def test_slide_inference_keeps_a_region_that_crosses_slices_unbroken():
    """mmseg's slide inference with --slice's crop and stride puts each slice's scores back
    where the slice lies: a segmentor that scores the ground truth of whatever it is shown
    returns the label map exactly, and a shape across four slices is one region."""
    height, width = 300, 420
    labels = np.zeros((height, width), dtype=np.int64)
    labels[100:220, 120:260] = 2  # across the borders of 160 px slices at 0.25 overlap
    labels[10:40, 300:400] = 1
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 255, (1, 3, height, width))).float()
    cfg = Config(dict(model=dict(test_cfg=dict(mode='whole')), test_dataloader=dict(
        dataset=dict(pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')])),
        default_scope='mmseg'))
    set_test_slicing(cfg, parse_slicing(160, 0.25))
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(160, 160), stride=(120, 120))
    model = GroundTruthSegmentor(num_classes=3, test_cfg=cfg.model.test_cfg)
    sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                         padding_size=[0, 0, 0, 0]))
    sample.gt_sem_seg = PixelData(data=torch.from_numpy(labels)[None])
    with torch.no_grad():
        predicted = model.predict(image, [sample])[0].pred_sem_seg.data[0].numpy()
    assert (predicted == labels).all()
    regions, count = ndimage.label(predicted == 2)
    assert count == 1


def test_large_scenes_are_generated_by_seed_with_their_cut_objects_counted(tmp_path):
    files = generate_large_scenes(str(tmp_path / 'a'), 1, 1536, seed=3)
    generate_large_scenes(str(tmp_path / 'b'), 1, 1536, seed=3)
    generate_large_scenes(str(tmp_path / 'c'), 1, 1536, seed=4)
    for name in ('images/scene_000.png', 'label_maps/scene_000.png',
                 'annotations/instances.json', 'summary.json'):
        a, b, c = (open(tmp_path / r / name, 'rb').read() for r in 'abc')
        assert a == b and a != c, name
    from pycocotools.coco import COCO
    coco = COCO(files['annotations'])
    masks = np.stack([coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds())]).astype(bool)
    assert masks.sum(0).max() == 1  # no two shapes overlap
    summary = json.load(open(tmp_path / 'a' / 'summary.json'))[0]
    assert summary['objects'] == len(masks) == round(1536 ** 2 / 24000) + 1
    boxes = [a['bbox'] for a in coco.loadAnns(coco.getAnnIds())]
    for size in (512, 1024):
        windows = slice_windows(1536, 1536, size, 0.2)
        by_box, by_pixels = [], []
        for (x, y, w, h), mask in zip(boxes, masks):
            # cut: a window overlaps the object's box without holding all of it
            by_box.append(any(
                x < x2 and x1 < x + w and y < y2 and y1 < y + h
                and not (x1 <= x and x + w <= x2 and y1 <= y and y + h <= y2)
                for x1, y1, x2, y2 in windows))
            inside = [mask[y1:y2, x1:x2].sum() for x1, y1, x2, y2 in windows]
            by_pixels.append(any(0 < n < mask.sum() for n in inside))
        assert summary['cut_by_slices'][str(size)] == sum(by_box), size
        # the drawn pixels agree, but for outlines within a pixel of a border
        for (x, y, w, h), box_cut, pixel_cut in zip(boxes, by_box, by_pixels):
            if box_cut != pixel_cut:
                assert box_cut and min(abs(v - b) for v in (x, y, x + w, y + h)
                                       for b in np.ravel(windows)) < 1
    assert summary['cut_by_slices']['512'] >= 0.25 * len(masks)
    sides = [max(a['bbox'][2:]) for a in coco.loadAnns(coco.getAnnIds())]
    assert max(sides) > 512 and np.median(sides) < 64
    # clusters: pairs of shapes at most 2 pixels apart
    ids = (masks * np.arange(1, len(masks) + 1)[:, None, None]).sum(0)
    near = set()
    for dy, dx in [(0, 1), (0, 2), (1, 0), (2, 0), (1, 1), (2, 2), (1, -1), (2, -2)]:
        a = ids[max(dy, 0):, max(dx, 0):ids.shape[1] + min(dx, 0)]
        b = ids[:ids.shape[0] - dy, max(-dx, 0):ids.shape[1] - max(dx, 0)]
        pairs = (a > 0) & (b > 0) & (a != b)
        near |= {tuple(sorted(p)) for p in zip(a[pairs].tolist(), b[pairs].tolist())}
    assert len(near) >= 5
    label = np.asarray(Image.open(files['label_maps'] + '/scene_000.png'))
    assert (label[masks.any(0)] >= 2).mean() > 0.8 and (label[~masks.any(0)] == 1).mean() > 0.99


def test_slicing_options_are_checked():
    for kwargs, message in [
            (dict(size=16), 'side of a slice in pixels'),
            (dict(size=512, overlap=1.0), 'fraction of a slice'),
            (dict(size=512, merge='wbf'), 'nmm, nms'),
            (dict(with_whole=True), 'needs --slice')]:
        with pytest.raises(UsageError, match=message):
            parse_slicing(**kwargs)
    cfg = Config.fromfile(LARGE_DET)
    with pytest.raises(UsageError, match='cannot be combined with --resolution'):
        set_test_slicing(cfg, parse_slicing(512), parse_resolution('native'))
    seg = Config.fromfile(LARGE_SEG)
    with pytest.raises(UsageError, match='detection options'):
        set_test_slicing(seg, parse_slicing(512, with_whole=True))
    set_test_slicing(cfg, parse_slicing(512, 0.25, with_whole=True))
    assert cfg.model.type == 'SlicedDetector' and cfg.model.whole_scale == (1333, 800)
    assert cfg.model.module.type == 'MaskRCNN'
    assert [t['type'] for t in cfg.test_dataloader.dataset.pipeline][:2] == [
        'LoadImageChecked', 'ResizeToResolution']


def test_sliced_inference_equals_the_model_on_each_slice_merged(tmp_path):
    """run_inference(slicing=...) returns what the plain detector predicts on each slice
    (given as its own image, predicted at its own resolution), merged by merge_slices and
    capped at the config's max_per_img (20, with the warning naming it)."""
    checkpoint = save_model_checkpoint(DET_CONFIG, tmp_path / 'det.pth')
    image = np.random.default_rng(0).integers(0, 255, (250, 330, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / 'scene.png')
    with pytest.warns(UserWarning, match=r'model.test_cfg.rcnn.max_per_img = 20'):
        outputs = run_inference(DET_CONFIG, checkpoint, str(tmp_path / 'scene.png'),
                                str(tmp_path / 'out'), slicing=Slicing(160, 0.25))
    cfg = Config.fromfile(DET_CONFIG)
    set_test_resolution(cfg, Resolution(1.0))
    inferencer = build_inferencer(cfg, checkpoint)
    bgr = image[..., ::-1]
    windows = slice_windows(250, 330, 160, 0.25)
    assert len(windows) == 6
    samples = predict(inferencer, [np.ascontiguousarray(bgr[y1:y2, x1:x2])
                                   for x1, y1, x2, y2 in windows])
    expected = merge_slices([(w, s.pred_instances) for w, s in zip(windows, samples)], 250, 330,
                            max_per_img=20)
    got = outputs[0]['instances']
    assert len(got) == len(expected) == 20
    order = torch.argsort(-expected.scores, stable=True)
    assert [i['score'] for i in got] == pytest.approx(expected.scores[order].tolist(), abs=1e-5)
    assert np.allclose([i['bbox'] for i in got], expected.bboxes[order].numpy(), atol=1e-2)
    assert [i['mask_area'] for i in got] == expected.masks[order].sum((1, 2)).tolist()
    assert outputs[0]['predicted_at'] == [250, 330]


def _oracle_configs(tmp_path, data, empty=False):
    """Configs of the large-scene tests with the ground-truth oracles as models."""
    imports = ("custom_imports = dict(imports=['xcit_dense', 'xcit_dense.testing.oracles'], "
               "allow_failed_imports=False)\n")
    det = tmp_path / f'det_{empty}.py'
    det.write_text(f"_base_ = [{LARGE_DET!r}]\n{imports}"
                   f"model = dict(_delete_=True, type='GroundTruthDetector', empty={empty}, "
                   f"ann_file='{data}/annotations/instances.json')\n")
    seg = tmp_path / f'seg_{empty}.py'
    seg.write_text(f"_base_ = [{LARGE_SEG!r}]\n{imports}"
                   "model = dict(_delete_=True, type='GroundTruthSegmentor', num_classes=4, "
                   f"shift={int(empty)}, data_preprocessor=dict(type='SegDataPreProcessor', "
                   "mean=[0., 0., 0.], std=[1., 1., 1.]))\n")
    for path, classes in ((tmp_path / 'det.pth', ('circle', 'square', 'triangle')),
                          (tmp_path / 'seg.pth', ('background', 'circle', 'square',
                                                  'triangle'))):
        torch.save({'state_dict': {'unit': torch.ones(1)},
                    'meta': {'dataset_meta': {'classes': classes}}}, path)
    return det, seg


def _benchmark(tmp_path, det, seg, data, ways, name):
    out = tmp_path / name
    done = subprocess.run(
        [sys.executable, 'tools/analysis_tools/benchmark_slicing.py', '--det-config', det,
         '--det-checkpoint', tmp_path / 'det.pth', '--seg-config', seg, '--seg-checkpoint',
         tmp_path / 'seg.pth', '--data', data, '--ways', *ways, '--work-dir',
         tmp_path / f'work_{name}', '--out', out], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    import csv
    with open(f'{out}.csv') as f:
        rows = {r['way']: r for r in csv.DictReader(f)}
    return rows, out


def test_the_slicing_benchmark_scores_the_ground_truth_perfect_and_wrong_labels_zero(tmp_path):
    """The benchmark through tools/test.py on a 1024 px scene: a detector and a segmentor that
    predict the ground truth score mAP 1 and mIoU 100 whole; sliced at 512, the objects that
    the slice borders cut are merged back whole (mAP 1), while an object wider than a slice
    stays in pieces (SAHI's merge joins pieces to the best-scored one only), and slide
    inference stays exact; models that predict nothing, or every pixel's class wrong, score
    0."""
    data = tmp_path / 'scenes'
    generate_large_scenes(str(data), 1, 1024, seed=1)
    det, seg = _oracle_configs(tmp_path, data)
    rows, out = _benchmark(tmp_path, det, seg, data, ['whole', 'sliced-512'], 'truth')
    whole, sliced = rows['whole'], rows['sliced-512']
    for key in ('bbox/all', 'bbox/cut-512', 'bbox/large', 'segm/all', 'segm/cut-512',
                'segm/large'):
        assert float(whole[key]) == pytest.approx(1.0, abs=1e-12), key  # COCOeval's sums
    assert float(whole['seg/mIoU']) == float(sliced['seg/mIoU']) == 100.0
    assert float(sliced['bbox/cut-512']) == pytest.approx(1.0, abs=1e-12)
    assert float(sliced['segm/cut-512']) == pytest.approx(1.0, abs=1e-12)
    assert int(sliced['objects/cut-512']) == 13 and int(sliced['objects/large']) == 1
    assert float(sliced['bbox/large']) < 1 and float(sliced['bbox/all']) < 1
    # the group scores agree with mmdet's CocoMetric over all objects, as tools/test.py logs it
    log = sorted((tmp_path / 'work_truth' / 'det' / 'sliced-512').glob('2*/2*.json'))[-1]
    logged = json.loads(log.read_text().strip().splitlines()[-1])
    assert logged['coco/bbox_mAP'] == pytest.approx(float(sliced['bbox/all']), abs=5e-4)
    assert logged['coco/segm_mAP'] == pytest.approx(float(sliced['segm/all']), abs=5e-4)
    table = open(f'{out}.md').read()
    assert table.splitlines()[2].startswith('| whole | 1.000 | 1.000 |')
    assert Image.open(f'{out}.png').size[0] == 960  # three panels of the 1024 px scene's corner

    det, seg = _oracle_configs(tmp_path, data, empty=True)
    rows, _ = _benchmark(tmp_path, det, seg, data, ['sliced-512'], 'wrong')
    for key, value in rows['sliced-512'].items():
        if key.startswith(('bbox/', 'segm/')) and value:
            assert float(value) == 0.0, key
    assert float(rows['sliced-512']['seg/mIoU']) == 0.0
