"""Test-time augmentation (tools/test.py --tta): the toy configs' tta_model merges their
tta_pipeline's views (3 scales x 2 flips) as a reference merged here from the plain model's
views does, the tool's TTA with a single view predicts exactly what its plain test does, a
plain model's checkpoint loads strictly into the TTA wrapper, Mask R-CNN's masks survive the
merge, and a config without TTA settings is a one-line error."""
import copy
import os
import pickle
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.runner import Runner

import xcit_dense  # noqa: F401
from xcit_dense.checkpoint import CheckpointMismatchError
from xcit_dense.engine import (UsageError, apply_tta, build_model, load_checkpoint_strictly,
                               scope_models, tta_module_as_model)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fresh_checkpoint(cfg, path):
    """A freshly built model's weights, saved as mmengine saves them."""
    model = build_model(cfg)
    torch.save({'state_dict': model.state_dict(), 'meta': {'note': 'fresh'}}, str(path))
    return model


def test_tta_without_settings_is_a_one_line_error(toy_cfg, toy_coco_root, tmp_path):
    cfg = toy_cfg('det', toy_coco_root, tmp_path, 'no_tta')
    cfg.tta_pipeline = None
    with pytest.raises(UsageError, match=r'--tta needs tta_pipeline in the config') as e:
        apply_tta(cfg)
    assert '\n' not in str(e.value)
    cfg.tta_model = None
    with pytest.raises(UsageError, match='tta_model and tta_pipeline'):
        apply_tta(cfg)


@pytest.mark.parametrize('kind', ['det', 'seg'])
def test_plain_checkpoint_loads_strictly_into_tta_wrapper(kind, toy_cfg, toy_coco_root,
                                                          toy_ade_root, tmp_path):
    root = toy_coco_root if kind == 'det' else toy_ade_root
    cfg = toy_cfg(kind, root, tmp_path, 'tta_load')
    ckpt = tmp_path / 'fresh.pth'
    reference = fresh_checkpoint(cfg, ckpt).state_dict()
    apply_tta(cfg)
    runner = Runner.from_cfg(cfg)
    assert type(runner.model).__name__ in ('DetTTAModelWithMasks', 'SegTTAModel')
    with tta_module_as_model(runner):
        load_checkpoint_strictly(runner, str(ckpt))
    assert type(runner.model).__name__ in ('DetTTAModelWithMasks', 'SegTTAModel')
    loaded = runner.model.state_dict()
    assert set(loaded) == {'module.' + k for k in reference}
    for key, value in reference.items():
        assert torch.equal(loaded['module.' + key], value), key
    # still strict: a checkpoint without one of the model's tensors is refused
    partial = dict(reference)
    partial.pop(next(k for k in partial if k.startswith('backbone.')))
    torch.save({'state_dict': partial, 'meta': {}}, str(tmp_path / 'partial.pth'))
    with pytest.raises(CheckpointMismatchError, match='(?i)missing keys'), \
            tta_module_as_model(runner):
        load_checkpoint_strictly(runner, str(tmp_path / 'partial.pth'))


def _sample(box, mask, score, flip):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    sample = DetDataSample(metainfo=dict(ori_shape=(8, 10), flip=flip,
                                         flip_direction='horizontal' if flip else None))
    sample.pred_instances = InstanceData(bboxes=torch.tensor([box]), scores=torch.tensor([score]),
                                         labels=torch.tensor([1]), masks=mask[None])
    return sample


@pytest.mark.parametrize('flipped_wins', [False, True])
def test_mask_tta_flips_masks_back_with_their_boxes(flipped_wins):
    """The same object seen plain and flipped: one instance survives the NMS, with the mask of
    the view whose box won, in the original image's orientation."""
    from mmengine.registry import DefaultScope
    cfg = Config(dict(model=dict(type='MaskRCNN'), tta_model=dict(type='DetTTAModel'),
                      tta_pipeline=[dict(type='TestTimeAug', transforms=[])],
                      test_dataloader=dict(dataset=dict(type='CocoDataset', pipeline=[]))))
    apply_tta(cfg)  # the TTA model --tta gives a detector: mmdet's, extended to masks
    mask = torch.zeros(8, 10, dtype=torch.bool)
    mask[2:5, 1:4] = True
    mask_flipped_view = mask.flip(-1)
    box, box_flipped_view = [1., 2., 4., 5.], [6., 2., 9., 5.]

    class Stub(torch.nn.Module):
        def test_step(self, data):
            return data

    with DefaultScope.overwrite_default_scope('mmdet'):
        model = scope_models('mmdet').build(dict(
            type=cfg.model.type, module=Stub(),
            tta_cfg=ConfigDict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=10)))
    views = [_sample(box, mask, 0.5, False),
             _sample(box_flipped_view, mask_flipped_view, 0.9 if flipped_wins else 0.1, True)]
    merged = model.merge_preds([views])[0].pred_instances
    assert len(merged) == 1
    assert torch.allclose(merged.bboxes, torch.tensor([box]))
    assert torch.equal(merged.masks[0], mask)
    assert merged.scores.item() == pytest.approx(0.9 if flipped_wins else 0.5)


def tta_batch(cfg, num_images):
    """The first ``num_images`` test images through ``cfg``'s (TTA) test pipeline, collated as
    the test loop's dataloader does: per view, a list of images and one of data samples."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    loader = copy.deepcopy(cfg.test_dataloader)
    loader.batch_size = num_images
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return next(iter(Runner.build_dataloader(loader)))


def views_of(cfg, num_images):
    """A fresh toy model wrapped by its config's tta_model (``cfg`` changed by --tta's
    :func:`apply_tta`), and ``num_images`` validation images in the tta_pipeline's views,
    checked to be the 3 scales, each also flipped: the flipped view's image is the plain
    one's mirrored."""
    apply_tta(cfg)
    model = build_model(cfg).eval()
    data = tta_batch(cfg, num_images)
    samples = data['data_samples']
    assert len(samples) == 6
    for i in range(num_images):
        shapes = {}
        for v, view in enumerate(samples):
            shapes.setdefault(view[i].img_shape, {})[bool(view[i].flip)] = data['inputs'][v][i]
        assert len(shapes) == 3 and all(len(pair) == 2 for pair in shapes.values())
        for pair in shapes.values():
            assert torch.equal(pair[True], pair[False].flip(-1))
    return model, data


def run_recording_views(model, data):
    """The TTA model's merged predictions, and the wrapped model's own predictions on each
    view as the TTA model got them, before its merge: ``[view][image]``."""
    views, test_step = [], model.module.test_step

    def recording(view):
        preds = test_step(view)
        views.append(copy.deepcopy(preds))
        return preds
    model.module.test_step = recording
    try:
        with torch.no_grad():
            merged = model.test_step(copy.deepcopy(data))
    finally:
        del model.module.test_step
    assert len(views) == 6
    return merged, views


def test_det_tta_merge_is_the_nms_of_the_views_flipped_back(toy_cfg, toy_coco_root, tmp_path):
    """The toy Mask R-CNN's TTA predictions (fresh weights, every detection kept) against a
    reference merged here from its 6 views' predictions (which the detector makes in each
    view's frame): the flipped views' boxes flipped back by hand (x -> W - x) and their masks
    mirrored, then torchvision's class-wise NMS at the config's IoU and its first
    max_per_img detections, each with its own view's mask."""
    from torchvision.ops import batched_nms
    cfg = toy_cfg('det', toy_coco_root, tmp_path, 'tta_merge')
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # an untrained model: keep every detection
    model, data = views_of(cfg, num_images=1)
    merged, views = run_recording_views(model, data)
    iou, top = cfg.model.tta_cfg.nms.iou_threshold, cfg.model.tta_cfg.max_per_img
    kept_flipped = set()
    for i, result in enumerate(merged):
        boxes, scores, labels, masks, flipped = [], [], [], [], []
        for view in views:
            sample = view[i]
            pred, W = sample.pred_instances, sample.ori_shape[1]
            box, mask = pred.bboxes.clone(), pred.masks
            if sample.flip:
                assert sample.flip_direction == 'horizontal'
                box[:, 0], box[:, 2] = W - pred.bboxes[:, 2], W - pred.bboxes[:, 0]
                mask = mask.flip(-1)
            boxes.append(box)
            scores.append(pred.scores)
            labels.append(pred.labels)
            masks.append(mask)
            flipped += [bool(sample.flip)] * len(box)
        boxes, scores, labels, masks = map(torch.cat, (boxes, scores, labels, masks))
        assert len(boxes) == 6 * 20  # 20 detections a view
        keep = batched_nms(boxes, scores, labels, iou)[:top]
        kept_flipped |= {flipped[k] for k in keep.tolist()}
        out = result.pred_instances
        assert len(out) == len(keep) == top
        assert torch.equal(out.labels, labels[keep])
        assert torch.allclose(out.scores, scores[keep])
        assert torch.allclose(out.bboxes, boxes[keep], atol=1e-4)
        assert torch.equal(out.masks, masks[keep])
        assert out.masks.shape[-2:] == result.ori_shape
    assert kept_flipped == {False, True}  # both flipped and plain views' detections merged


def test_seg_tta_merge_averages_the_views_probabilities(toy_cfg, toy_ade_root, tmp_path):
    """The toy Semantic FPN's TTA label maps (fresh weights) against a reference merged here
    from its 6 views' logits (resized to the image and, for the flipped views, mirrored back
    by the model): softmax, averaged over the views, argmax. That the model mirrors a flipped
    view's logits back is checked by hand on one view: made without the flip, mirrored here,
    they are the same (mmseg mirrors before it resizes, this after: equal up to rounding)."""
    cfg = toy_cfg('seg', toy_ade_root, tmp_path, 'tta_merge')
    model, data = views_of(cfg, num_images=1)
    merged, views = run_recording_views(model, data)
    logits = [view[0].seg_logits.data for view in views]
    assert all(x.shape == (4, *merged[0].ori_shape) for x in logits)
    expected = torch.stack([x.softmax(0) for x in logits]).mean(0).argmax(0)
    got = merged[0].pred_sem_seg.data[0]
    assert torch.equal(got, expected)
    assert len(expected.unique()) > 1 and any(  # not any one view's labels
        not torch.equal(x.argmax(0), got) for x in logits)
    # a flipped view at a resized scale, made without the flip, mirrored back here
    v = next(v for v, view in enumerate(views)
             if view[0].flip and view[0].img_shape != view[0].ori_shape)
    sample = copy.deepcopy(data['data_samples'][v][0])
    sample.set_metainfo(dict(flip=False, flip_direction=None))
    with torch.no_grad():
        plain = model.module.test_step(dict(inputs=[data['inputs'][v][0]],
                                            data_samples=[sample]))[0]
    assert torch.allclose(plain.seg_logits.data.flip(-1), logits[v], atol=1e-5)


def run_test_tool(config, ckpt, work_dir, *extra):
    result = subprocess.run(
        [sys.executable, 'tools/test.py', str(config), str(ckpt), '--work-dir', str(work_dir),
         *extra], cwd=ROOT, capture_output=True, text=True)
    return result


def logged_metrics(log):
    """The metrics on a test run's last ``Epoch(test)`` (or ``Iter(test)``) line: {name:
    value as printed}, without its timings."""
    line = [line for line in log.splitlines() if '(test)' in line][-1]
    return {k: v for k, v in re.findall(r'(\S+): (-?[\d.]+)', line.split('(test)')[1])
            if not k.endswith('time')}


@pytest.mark.parametrize('kind', ['det', 'seg'])
def test_test_tool_single_view_tta_equals_the_plain_test(kind, toy_cfg, toy_coco_root,
                                                         toy_ade_root, tmp_path):
    """tools/test.py --tta with the toy config's TTA settings cut to one view (the test
    pipeline's scale, not flipped): the TTA wrapper's merge of that one view is exactly the
    plain test's predictions and metrics, on the same checkpoint; a config without tta
    settings gets one line."""
    root = toy_coco_root if kind == 'det' else toy_ade_root
    cfg = toy_cfg(kind, root, tmp_path / 'run', 'tta_tool')
    if kind == 'det':
        cfg.model.test_cfg.rcnn.score_thr = 0.0  # an untrained model: keep every detection
    scales, flips = cfg.tta_pipeline[1].transforms[:2]
    test_resize = [t for t in cfg.test_pipeline if t.type == 'Resize']
    cfg.tta_pipeline[1].transforms[0] = [  # the test pipeline's scale (seg: its own size)
        t for t in scales if (t.get('scale') == test_resize[0].scale if test_resize
                              else t.get('scale_factor') == 1.0)]
    cfg.tta_pipeline[1].transforms[1] = [t for t in flips if t.prob == 0.]
    assert [len(t) for t in cfg.tta_pipeline[1].transforms] == [1, 1, 1, 1]
    config = tmp_path / f'toy_{kind}.py'
    cfg.dump(str(config))
    ckpt = tmp_path / 'fresh.pth'
    fresh_checkpoint(cfg, ckpt)
    results = {}
    for mode, extra in (('plain', ()), ('tta', ('--tta',))):
        result = run_test_tool(config, ckpt, tmp_path / 'run', '--out',
                               str(tmp_path / f'{mode}.pkl'), *extra)
        assert result.returncode == 0, result.stderr[-3000:]
        log = result.stdout + result.stderr
        with open(tmp_path / f'{mode}.pkl', 'rb') as f:
            results[mode] = (pickle.load(f), logged_metrics(log))
        if mode == 'tta':
            assert ('DetTTAModelWithMasks' if kind == 'det' else 'SegTTAModel') in log
    (plain, plain_metrics), (tta, tta_metrics) = results['plain'], results['tta']
    keys = {'coco/bbox_mAP', 'coco/segm_mAP'} if kind == 'det' else {'mIoU', 'aAcc'}
    assert keys <= set(plain_metrics) and tta_metrics == plain_metrics
    assert len(plain) == len(tta) == 4
    for p, t in zip(plain, tta):
        assert p['img_path'] == t['img_path']
        if kind == 'det':
            p, t = p['pred_instances'], t['pred_instances']
            assert len(p['scores']) == 20  # the detector's max_per_img: not vacuous
            assert torch.equal(p['labels'], t['labels'])
            assert torch.allclose(p['scores'], t['scores'])
            assert torch.allclose(p['bboxes'], t['bboxes'])
            assert [m['counts'] for m in p['masks']] == [m['counts'] for m in t['masks']]
        else:
            assert torch.equal(p['pred_sem_seg']['data'], t['pred_sem_seg']['data'])
    if kind == 'det':  # the missing-settings error, through the tool
        plain = Config.fromfile(str(config))
        plain.tta_pipeline, plain.tta_model = None, None
        plain.dump(str(tmp_path / 'no_tta.py'))
        result = run_test_tool(tmp_path / 'no_tta.py', ckpt, tmp_path / 'run', '--tta')
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert 'tta_model and tta_pipeline' in lines[-1] and 'Traceback' not in result.stderr
