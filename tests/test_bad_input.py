"""Bad input: each case stops with a clear error naming the culprit (or, where the config
says so, warns and skips it), before the run writes anything."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner
from PIL import Image

import xcit_dense  # noqa: F401
from xcit_dense.datasets.transforms import BadImageError, LoadImageChecked
from xcit_dense.datasets.validate import AnnotationError
from xcit_dense.engine import NonFiniteLossError, check_datasets_exist, make_resumable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def data_check_stamps(tmp_path, monkeypatch):
    """The data check's stamps (xcit_dense.engine.data_check) in the test's folder, not the
    user's cache (the training tool run below inherits it)."""
    monkeypatch.setenv('XCIT_DENSE_DATA_CHECK_CACHE', str(tmp_path / 'stamps'))


@pytest.fixture
def coco_copy(toy_coco_root, tmp_path):
    root = tmp_path / 'coco'
    shutil.copytree(toy_coco_root, root)
    return str(root) + '/'


def edit_annotations(root, split, edit):
    path = os.path.join(root, f'annotations/instances_{split}.json')
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, 'w') as f:
        json.dump(data, f)
    return path


@pytest.fixture
def images(tmp_path):
    rgb = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / 'ok.jpg')
    Image.fromarray(rgb).save(tmp_path / 'ok.png')
    data = (tmp_path / 'ok.jpg').read_bytes()
    (tmp_path / 'truncated.jpg').write_bytes(data[:len(data) // 3])
    data = (tmp_path / 'ok.png').read_bytes()
    (tmp_path / 'truncated.png').write_bytes(data[:len(data) // 2])
    (tmp_path / 'text.png').write_bytes(b'not an image')
    Image.fromarray(rgb[..., 0]).save(tmp_path / 'gray.png')
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(tmp_path / 'rgba.png')
    return tmp_path


@pytest.mark.parametrize('name,reason', [
    ('missing.png', 'does not exist'),
    ('truncated.jpg', 'cannot be decoded'),
    ('truncated.png', 'cannot be decoded'),
    ('text.png', 'cannot be decoded (12 bytes: truncated, corrupt or not an image)')])
def test_unreadable_images_are_named(images, name, reason):
    path = str(images / name)
    with pytest.raises(BadImageError, match=re.escape(f'Image {path} {reason}')):
        LoadImageChecked()(dict(img_path=path))
    with pytest.warns(UserWarning, match=re.escape(f'Image {path} {reason}') + '.*; skipped'):
        assert LoadImageChecked(skip_bad=True)(dict(img_path=path)) is None


def test_grayscale_and_rgba_images_load_as_three_channels(images):
    rgb = LoadImageChecked()(dict(img_path=str(images / 'ok.png')))['img']
    gray = LoadImageChecked()(dict(img_path=str(images / 'gray.png')))['img']
    rgba = LoadImageChecked()(dict(img_path=str(images / 'rgba.png')))['img']
    assert rgb.shape == gray.shape == rgba.shape == (40, 50, 3)
    assert np.array_equal(rgba, rgb)  # alpha dropped
    assert np.array_equal(gray[..., 0], gray[..., 2])


def test_training_stops_on_a_corrupt_image_or_skips_it_when_configured(coco_copy, toy_cfg,
                                                                       tmp_path):
    bad = os.path.join(coco_copy, 'train', '000003.png')
    with open(bad, 'r+b') as f:
        f.truncate(200)
    cfg = toy_cfg('det', coco_copy, tmp_path / 'strict', 'bad_image')
    cfg.train_cfg.max_epochs = 1
    with pytest.raises(BadImageError, match=f'Image {bad} cannot be decoded'):
        Runner.from_cfg(cfg).train()

    cfg = toy_cfg('det', coco_copy, tmp_path / 'skip', 'bad_image_skipped')
    cfg.train_cfg.max_epochs, cfg.train_cfg.val_interval = 1, 2
    cfg.train_dataloader.dataset.pipeline[0]['skip_bad'] = True
    with pytest.warns(UserWarning, match=f'Image {bad} cannot be decoded.*skipped'):
        runner = Runner.from_cfg(cfg)
        runner.train()
    assert runner.iter == 2  # every batch was filled with readable images


@pytest.mark.parametrize('case,message', [
    ('not_json', r'instances_train\.json is not valid JSON: Expecting .* at line 1, column'),
    ('unknown_category', r"1 annotations refer to unknown categories \(annotation id, "
                         r"category_id\): \(1, 99\); the file defines categories \[1, 2, 3\]"),
    ('unknown_image', r'1 annotations refer to unknown images \(annotation id, image_id\): '
                      r'\(1, 12345\)'),
    ('missing_image', r'1 images listed in .*instances_train\.json are missing from '
                      r'.*train/: 000002\.png')])
def test_broken_annotations_are_named_before_anything_is_written(coco_copy, toy_cfg, tmp_path,
                                                                 case, message):
    path = os.path.join(coco_copy, 'annotations/instances_train.json')
    if case == 'not_json':
        text = open(path).read()
        with open(path, 'w') as f:
            f.write(text[:100] + text[101:])  # one character gone
    elif case == 'missing_image':
        os.remove(os.path.join(coco_copy, 'train', '000002.png'))
    else:
        key, value = ('category_id', 99) if case == 'unknown_category' else ('image_id', 12345)
        edit_annotations(coco_copy, 'train',
                         lambda d: d['annotations'][0].update({key: value, 'id': 1}))
    cfg = toy_cfg('det', coco_copy, tmp_path / 'work', 'broken')
    with pytest.raises(AnnotationError, match=message):
        check_datasets_exist(cfg)
    if case == 'not_json':  # the same through the training tool
        config = tmp_path / 'cfg.py'
        cfg.dump(str(config))
        proc = subprocess.run([sys.executable, 'tools/train.py', str(config)], cwd=ROOT,
                              capture_output=True, text=True)
        assert proc.returncode != 0
        assert 'AnnotationError' in proc.stderr and 'is not valid JSON' in proc.stderr
        assert not (tmp_path / 'work').exists()  # nothing written


def test_images_without_annotations_are_filtered_in_training_and_evaluated(
        coco_copy, toy_cfg, tmp_path):
    def drop_first_image_annotations(data):
        data['annotations'] = [a for a in data['annotations'] if a['image_id'] != 1]
    for split in ('train', 'val'):
        edit_annotations(coco_copy, split, drop_first_image_annotations)
    cfg = toy_cfg('det', coco_copy, tmp_path / 'work', 'empty_images')
    check_datasets_exist(cfg)
    runner = Runner.from_cfg(cfg)
    assert len(runner.train_dataloader.dataset) == 7  # filter_empty_gt
    assert len(runner.val_dataloader.dataset) == 4
    metrics = runner.val()
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0


def test_tiny_and_elongated_images(toy_cfg, toy_coco_root, tmp_path):
    from mmdet.apis import inference_detector
    from xcit_dense.models import XCiT
    backbone = XCiT('nano_12', patch_size=8).eval()
    with torch.no_grad():
        for H, W in ((1, 1), (5, 7), (8, 2000), (3000, 8)):
            outs = backbone(torch.randn(1, 3, H, W))
            Hp, Wp = -(-H // 8) * 8, -(-W // 8) * 8  # padded to one patch at least
            assert [o.shape[2:] for o in outs] == [
                (-(-Hp // s), -(-Wp // s)) for s in (4, 8, 16, 32)]
    cfg = toy_cfg('det', toy_coco_root, tmp_path, 'shapes')
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = MODELS.build(cfg.model).eval()
    detector.cfg = cfg
    for H, W in ((6, 6), (20, 600), (600, 20)):
        image = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)
        result = inference_detector(detector, image)
        boxes = result.pred_instances.bboxes
        assert result.pred_instances.masks.shape[1:] == (H, W)
        assert bool((boxes[:, 0::2] <= W + 1e-3).all() and (boxes[:, 1::2] <= H + 1e-3).all())


def test_nan_input_stops_training_naming_the_iteration_and_keeps_the_last_checkpoint(
        toy_cfg, toy_ade_root, tmp_path):
    from mmseg.registry import TRANSFORMS

    @TRANSFORMS.register_module(force=True)
    class PoisonAfter:
        """Float images, with NaN pixels in every sample from the ``after``-th on."""
        calls = 0

        def __init__(self, after):
            self.after = after

        def __call__(self, results):
            img = results['img'].astype(np.float32)
            if PoisonAfter.calls >= self.after:
                img[0, 0] = np.nan
            PoisonAfter.calls += 1
            results['img'] = img
            return results

    cfg = toy_cfg('seg', toy_ade_root, tmp_path, 'nan')
    cfg.train_dataloader.batch_size = 4
    cfg.train_dataloader.dataset.pipeline.insert(1, dict(type='PoisonAfter', after=8))
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 6, 10
    cfg.default_hooks.checkpoint.update(interval=2, max_keep_ckpts=-1)
    make_resumable(cfg)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    message = str(info.value)
    # samples 8.. are poisoned: iteration 3 (batch of 4) is the first with NaN
    assert message.startswith('Training stopped at iteration 3: non-finite loss (loss=nan')
    assert 'The input batch itself holds NaN or infinite values.' in message
    assert 'images/training/' in message
    assert message.endswith(f'The last good checkpoint is {tmp_path / "iter_2.pth"}; fix the '
                            'cause (learning rate, data, fp16 loss scale) and resume from it '
                            'with --resume.')
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith('.pth')) == ['iter_2.pth']
    state = torch.load(tmp_path / 'iter_2.pth', weights_only=True)['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize('backbone,error,message', [
    (dict(arch='s13'), KeyError, r"Unknown XCiT arch 's13'; valid names are \['large_24', "),
    (dict(arch='s12', out_indices=(3, 5, 7, 12)), ValueError,
     r'out_indices must be 4 ascending block indices in \[0, 11\] for a depth-12 XCiT, got '
     r'\(3, 5, 7, 12\)'),
    (dict(arch='s12', patch_size=14), ValueError,
     'XCiT patch_size must be one of \\(8, 16\\), got 14')])
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_bad_backbone_configs_name_the_setting(scope, backbone, error, message):
    with DefaultScope.overwrite_default_scope(scope), pytest.raises(error, match=message):
        MODELS.build(dict(type='XCiT', **backbone))
