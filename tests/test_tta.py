"""Test-time augmentation (tools/test.py --tta): the toy configs' tta_pipeline/tta_model run
end to end, a plain model's checkpoint loads strictly into the TTA wrapper, Mask R-CNN's masks
survive the merge, and a config without TTA settings is a one-line error."""
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.runner import Runner

import xcit_dense  # noqa: F401
from xcit_dense.checkpoint import CheckpointMismatchError
from xcit_dense.engine import (UsageError, apply_tta, build_model, load_checkpoint_strictly,
                               tta_module_as_model)

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

    from xcit_dense.engine.build import scope_models
    from xcit_dense.engine.launch import _mask_tta_model
    mask = torch.zeros(8, 10, dtype=torch.bool)
    mask[2:5, 1:4] = True
    mask_flipped_view = mask.flip(-1)
    box, box_flipped_view = [1., 2., 4., 5.], [6., 2., 9., 5.]

    class Stub(torch.nn.Module):
        def test_step(self, data):
            return data

    with DefaultScope.overwrite_default_scope('mmdet'):
        model = scope_models('mmdet').build(dict(
            type=_mask_tta_model(), module=Stub(),
            tta_cfg=ConfigDict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=10)))
    views = [_sample(box, mask, 0.5, False),
             _sample(box_flipped_view, mask_flipped_view, 0.9 if flipped_wins else 0.1, True)]
    merged = model.merge_preds([views])[0].pred_instances
    assert len(merged) == 1
    assert torch.allclose(merged.bboxes, torch.tensor([box]))
    assert torch.equal(merged.masks[0], mask)
    assert merged.scores.item() == pytest.approx(0.9 if flipped_wins else 0.5)


def run_test_tool(config, ckpt, work_dir, *extra):
    result = subprocess.run(
        [sys.executable, 'tools/test.py', str(config), str(ckpt), '--work-dir', str(work_dir),
         *extra], cwd=ROOT, capture_output=True, text=True)
    return result


@pytest.mark.parametrize('kind', ['det', 'seg'])
def test_test_tool_tta_on_toy_data(kind, toy_cfg, toy_coco_root, toy_ade_root, tmp_path):
    """tools/test.py --tta on the toy configs (3 scales x 2 flips): every metric of the plain
    test is computed, from the merged views; a config without tta settings gets one line."""
    root = toy_coco_root if kind == 'det' else toy_ade_root
    cfg = toy_cfg(kind, root, tmp_path / 'run', 'tta_tool')
    if kind == 'det':
        cfg.model.test_cfg.rcnn.score_thr = 0.0  # an untrained model: keep every detection
    config = tmp_path / f'toy_{kind}.py'
    cfg.dump(str(config))
    ckpt = tmp_path / 'fresh.pth'
    fresh_checkpoint(cfg, ckpt)
    result = run_test_tool(config, ckpt, tmp_path / 'run', '--tta')
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert ('DetTTAModelWithMasks' if kind == 'det' else 'SegTTAModel') in log
    keys = ('coco/bbox_mAP', 'coco/segm_mAP') if kind == 'det' else ('mIoU',)
    for key in keys:
        assert key in log, log[-3000:]
    if kind == 'det':  # the missing-settings error, through the tool
        plain = Config.fromfile(str(config))
        plain.tta_pipeline, plain.tta_model = None, None
        plain.dump(str(tmp_path / 'no_tta.py'))
        result = run_test_tool(tmp_path / 'no_tta.py', ckpt, tmp_path / 'run', '--tta')
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert 'tta_model and tta_pipeline' in lines[-1] and 'Traceback' not in result.stderr
