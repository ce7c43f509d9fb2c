"""The toy COCO panoptic split (issue 21): deterministic, segments that match the drawn
pixels, read back by mmdet's CocoPanopticDataset (its base config's pipelines) and scored
PQ 100 against itself by CocoPanopticMetric; and panopticapi (the ``panopticapi-lite``
package, which ``make setup`` installs) computing PQ as its formula says."""
import json
import os

import mmdet
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

from xcit_dense.datasets import TOY_COCO_PANOPTIC_CLASSES, generate_toy_coco_panoptic
from xcit_dense.datasets.toy_coco_panoptic import id2rgb

MMDET_BASE = os.path.join(os.path.dirname(mmdet.__file__),
                          '.mim/configs/_base_/datasets/coco_panoptic.py')
THINGS = TOY_COCO_PANOPTIC_CLASSES[:3]


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('toy_panoptic'))
    generate_toy_coco_panoptic(root, num_train=6, num_val=3, size=160, seed=0)
    return root


def read_ids(path):
    rgb = np.asarray(Image.open(path)).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]


def load(root, split):
    with open(os.path.join(root, 'annotations', f'panoptic_{split}.json')) as f:
        return json.load(f)


def test_deterministic_by_seed(tmp_path):
    def files(root):
        return {os.path.relpath(os.path.join(folder, name), root):
                open(os.path.join(folder, name), 'rb').read()
                for folder, _, names in os.walk(root) for name in names}
    for name, seed in (('a', 3), ('b', 3), ('c', 4)):
        generate_toy_coco_panoptic(str(tmp_path / name), 3, 2, size=64, seed=seed)
    a, b, c = (files(tmp_path / name) for name in 'abc')
    assert a == b and a.keys() == c.keys() and a != c
    assert sorted(a)[:5] == ['annotations/instances_train.json',
                             'annotations/instances_val.json',
                             'annotations/panoptic_train.json',
                             'annotations/panoptic_train/000000000001.png',
                             'annotations/panoptic_train/000000000002.png']


def test_segments_match_the_drawn_shapes(toy):
    coco = load(toy, 'train')
    assert [(c['name'], c['isthing']) for c in coco['categories']] == [
        ('circle', 1), ('square', 1), ('triangle', 1), ('background', 0)]
    assert [a['file_name'] for a in coco['annotations']] == [
        i['file_name'] for i in coco['images']] == [f'{i:012d}.png' for i in range(1, 7)]
    for ann in coco['annotations']:
        ids = read_ids(os.path.join(toy, 'annotations/panoptic_train', ann['file_name']))
        img = np.asarray(Image.open(os.path.join(toy, 'train', ann['file_name'])))
        segments = ann['segments_info']
        assert sorted(np.unique(ids)) == sorted(s['id'] for s in segments)  # no void
        assert [s['category_id'] for s in segments].count(4) == 1  # one stuff segment
        for s in segments:
            mask = ids == s['id']
            ys, xs = np.nonzero(mask)
            assert s['area'] == mask.sum() and s['iscrowd'] == 0
            assert s['bbox'] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
            if s['category_id'] != 4:  # a shape: one flat colour, every pixel of it
                assert len(np.unique(img[mask], axis=0)) == 1


def test_id2rgb_is_panopticapis():
    from panopticapi.utils import id2rgb as reference
    from panopticapi.utils import rgb2id
    ids = np.random.default_rng(0).integers(0, 256**3, (7, 5))
    assert np.array_equal(id2rgb(ids), reference(ids))
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)


def dataset(toy, split, pipeline):
    from mmdet.registry import DATASETS
    cfg = Config.fromfile(MMDET_BASE)
    loader = cfg[f'{split}_dataloader'].dataset
    loader.update(
        data_root=toy, ann_file=f'annotations/panoptic_{split}.json',
        data_prefix=dict(img=f'{split}/', seg=f'annotations/panoptic_{split}/'),
        metainfo=dict(classes=TOY_COCO_PANOPTIC_CLASSES, thing_classes=THINGS,
                      stuff_classes=TOY_COCO_PANOPTIC_CLASSES[3:]),
        pipeline=cfg[pipeline])
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DATASETS.build(loader), cfg


def drawn(toy, split, ann):
    """The drawn labels: things' masks in order, and the semantic map (things 0..2,
    background 3)."""
    ids = read_ids(os.path.join(toy, f'annotations/panoptic_{split}', ann['file_name']))
    label = {s['id']: s['category_id'] - 1 for s in ann['segments_info']}
    things = [ids == s['id'] for s in ann['segments_info'] if s['category_id'] != 4]
    return np.array(things), np.vectorize(label.get)(ids)


@pytest.mark.parametrize('split,pipeline', [('train', 'train_pipeline'),
                                            ('val', 'test_pipeline')])
def test_mmdet_reads_what_was_drawn(toy, split, pipeline):
    data, _ = dataset(toy, split, pipeline)
    anns = load(toy, split)['annotations']
    assert len(data) == len(anns)
    for index, ann in enumerate(anns):
        sample = data[index]['data_samples']
        masks, semantic = drawn(toy, split, ann)
        got_masks = sample.gt_instances.masks.to_ndarray().astype(bool)
        got_semantic = sample.gt_sem_seg.sem_seg[0].numpy()
        if split == 'train':  # Resize (x5 here, nearest) and RandomFlip: undo both
            assert sample.scale_factor == pytest.approx((5.0, 5.0))
            if sample.flip:
                got_masks, got_semantic = got_masks[..., ::-1], got_semantic[..., ::-1]
            got_masks, got_semantic = got_masks[:, 2::5, 2::5], got_semantic[2::5, 2::5]
        assert np.array_equal(got_masks, masks)
        assert np.array_equal(got_semantic, semantic)
        labels = sorted(s['category_id'] - 1 for s in ann['segments_info'] if s['category_id'] != 4)
        assert sorted(sample.gt_instances.labels.tolist()) == labels


def perfect_predictions(data):
    """Data samples whose predicted panoptic map is the ground truth, in mmdet's encoding:
    label + instance * INSTANCE_OFFSET for things, label for stuff."""
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    samples = []
    for index in range(len(data)):
        info = data.get_data_info(index)
        ids = read_ids(info['seg_map_path'])
        pan = np.zeros_like(ids)
        for k, s in enumerate(info['segments_info'], 1):
            pan[ids == s['id']] = s['category'] + (k * INSTANCE_OFFSET if s['is_thing'] else 0)
        samples.append(dict(img_id=info['img_id'], img_path=info['img_path'],
                            ori_shape=ids.shape, segments_info=info['segments_info'],
                            seg_map_path=info['seg_map_path'],
                            pred_panoptic_seg=dict(sem_seg=torch.from_numpy(pan)[None])))
    return samples


@pytest.mark.parametrize('outfile', [False, True])
def test_pq_of_the_ground_truth_against_itself_is_100(toy, tmp_path, outfile):
    from mmdet.evaluation import CocoPanopticMetric
    data, cfg = dataset(toy, 'val', 'test_pipeline')
    metric = CocoPanopticMetric(
        ann_file=os.path.join(toy, 'annotations/panoptic_val.json'),
        seg_prefix=os.path.join(toy, 'annotations/panoptic_val/'), nproc=1,
        outfile_prefix=str(tmp_path / 'results') if outfile else None)
    assert cfg.val_evaluator.type == 'CocoPanopticMetric'
    metric.dataset_meta = data.metainfo
    metric.process({}, perfect_predictions(data))
    results = metric.evaluate(len(data))
    assert {k.split('/')[1]: v for k, v in results.items()} == {
        f'{m}{part}': 100.0 for m in ('PQ', 'SQ', 'RQ') for part in ('', '_th', '_st')}


# --- panopticapi's PQ against the formula -------------------------------------------------

def reference_pq(gt, pred, gt_segments, pred_segments):
    """PQ's definition (Kirillov et al. 2019, COCO panoptic evaluation), in numpy: a
    predicted and a ground-truth segment of the same category match where their IoU, not
    counting the prediction's unlabelled (void, id 0) ground-truth pixels, is over 0.5;
    an unmatched prediction lying over half on void is not a false positive. ``*_segments``:
    {segment id: category id}. Returns {category: (iou sum, tp, fp, fn)}."""
    stats = {c: [0.0, 0, 0, 0] for c in {*gt_segments.values(), *pred_segments.values()}}
    matched = set()
    for g, category in gt_segments.items():
        for p in (p for p, c in pred_segments.items() if c == category):
            inter = np.sum((gt == g) & (pred == p))
            iou = inter / (np.sum((gt == g) | (pred == p)) - np.sum((gt == 0) & (pred == p)))
            if iou > 0.5:
                stats[category][:2] = stats[category][0] + iou, stats[category][1] + 1
                matched |= {('gt', g), ('pred', p)}
    for kind, segments, index in (('gt', gt_segments, 3), ('pred', pred_segments, 2)):
        for s, category in segments.items():
            void = np.sum((gt == 0) & (pred == s)) / np.sum(pred == s) if kind == 'pred' else 0
            if (kind, s) not in matched and void <= 0.5:
                stats[category][index] += 1
    return stats


def panopticapi_pq(tmp_path, gt, pred, gt_segments, pred_segments, isthing):
    """panopticapi's pq_compute_single_core and PQStat on one image, from its PNGs."""
    from panopticapi.evaluation import pq_compute_single_core
    for name, ids in (('gt', gt), ('pred', pred)):
        (tmp_path / name).mkdir(exist_ok=True)
        Image.fromarray(id2rgb(ids)).save(tmp_path / name / 'x.png')

    def ann(ids, segments):  # a ground-truth area is read from here, a prediction's counted
        return dict(image_id=1, file_name='x.png', segments_info=[
            dict(id=s, category_id=c, iscrowd=0, area=int(np.sum(ids == s)))
            for s, c in segments.items()])
    categories = {c: dict(id=c, isthing=isthing(c)) for c in range(1, 10)}
    stat = pq_compute_single_core(0, [(ann(gt, gt_segments), ann(pred, pred_segments))],
                                  str(tmp_path / 'gt'), str(tmp_path / 'pred'), categories)
    return stat, categories


def test_one_segment_of_iou_0_6_scores_sq_0_6_rq_1_pq_60(tmp_path):
    from mmdet.evaluation.metrics.coco_panoptic_metric import parse_pq_results
    gt = np.zeros((10, 10), np.int64)
    gt[:5] = 7  # 50 pixels
    pred = np.zeros_like(gt)
    pred[:3] = 9  # 30 of them
    pred[9] = 9  # and 10 void pixels of the ground truth, which do not count
    stat, categories = panopticapi_pq(tmp_path, gt, pred, {7: 1}, {9: 1}, lambda c: 1)
    assert (stat[1].tp, stat[1].fp, stat[1].fn) == (1, 0, 0)
    assert reference_pq(gt, pred, {7: 1}, {9: 1})[1] == pytest.approx([0.6, 1, 0, 0])
    results, _ = stat.pq_average({1: categories[1]}, isthing=None)
    assert results == pytest.approx(dict(pq=0.6, sq=0.6, rq=1.0, n=1))
    parsed = parse_pq_results({name: results for name in ('All', 'Things', 'Stuff')})
    assert parsed['PQ'] == pytest.approx(60.0) and parsed['SQ'] == pytest.approx(60.0)


def test_panopticapi_agrees_with_the_formula_on_perturbed_toy_predictions(toy, tmp_path):
    rng = np.random.default_rng(0)
    totals = np.zeros(4)
    for split in ('train', 'val'):
        for ann in load(toy, split)['annotations']:
            gt = read_ids(os.path.join(toy, f'annotations/panoptic_{split}', ann['file_name']))
            gt_segments = {s['id']: s['category_id'] for s in ann['segments_info']}
            gt[:, :4] = 0  # a void band
            # predictions: shifted (some shapes' IoU falls under 0.5), the first shape
            # relabelled, the last dropped to void, a spurious segment on void, another on
            # the background
            pred = np.roll(gt, tuple(rng.integers(1, 12, 2)), axis=(0, 1))
            pred_segments = dict(gt_segments)
            shapes = sorted(s for s, c in gt_segments.items() if c != 4)
            pred_segments[shapes[0]] = pred_segments[shapes[0]] % 3 + 1
            if len(shapes) > 1:
                pred[pred == shapes[-1]] = 0
            pred[:6, :3], pred[-8:, -8:] = 42, 43
            pred_segments.update({42: 1, 43: 2})
            present = set(np.unique(pred)) - {0}
            pred_segments = {s: c for s, c in pred_segments.items() if s in present}
            stat, _ = panopticapi_pq(tmp_path, gt, pred, gt_segments, pred_segments,
                                     lambda c: int(c != 4))
            for category, expected in reference_pq(gt, pred, gt_segments,
                                                   pred_segments).items():
                got = [stat[category].iou, stat[category].tp, stat[category].fp,
                       stat[category].fn]
                assert got == pytest.approx(expected), (split, ann['file_name'], category)
                totals += expected
    assert np.all(totals[1:] >= 5), totals  # matches, false positives and negatives alike


def test_pq_compute_of_the_toy_split_against_itself(toy, capsys):
    from panopticapi.evaluation import pq_compute
    gt_json = os.path.join(toy, 'annotations/panoptic_val.json')
    results = pq_compute(gt_json, gt_json)  # PNG folder: the JSON's path without .json
    for part in ('All', 'Things', 'Stuff'):
        assert results[part]['pq'] == results[part]['sq'] == results[part]['rq'] == 1.0
    assert results['Things']['n'] == 3 and results['Stuff']['n'] == 1
