"""The user's path: shipped configs that each take a different path through the tools run as a
user runs them, shrunk to XCiT-N12 and the toy data (``xcit_dense.testing.tool_runs``):
``tools/train.py`` for two iterations, then ``tools/test.py`` on the checkpoint it wrote, each in
its own process.

* DINO: a constructor that writes into its config (``DeformableDETR``), so a second build of the
  same config failed;
* RTMDet-Ins: mmengine's ``EMAHook``, which made ``tools/test.py`` crash;
* Mask2Former (mmdet): four maps, masks from queries;
* UperNet (mmseg): a head beyond Semantic FPN.

Predictions of ``tools/test.py`` (``--out``; DINO, RTMDet-Ins, UperNet) are checked against
mmdet's and mmseg's own inference API (``init_detector``/``inference_detector``,
``init_model``/``inference_model``) on the same checkpoint: the tool evaluated the weights it
was given. Every other shipped config,
and heads this project does not ship, run the same way in
``tools/analysis_tools/head_matrix.py``.
"""
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

import xcit_dense  # noqa: F401
from xcit_dense.checkpoint import load_state_dict_file
from xcit_dense.engine import build_model, drop_ema_hooks
from xcit_dense.testing.tool_runs import (ROOT, scale_image_sizes, shrink_to_toy, train_and_test,
                                          write_toy_config)

COCO_BOX_METRICS = {f'coco/bbox_mAP{s}' for s in ('', '_50', '_75', '_s', '_m', '_l')}
COCO_MASK_METRICS = {k.replace('bbox', 'segm') for k in COCO_BOX_METRICS}
DINO = 'configs/dino/dino-4scale_xcit-s12-p8_8xb2-12e_coco.py'
RTMDET = 'configs/rtmdet/rtmdet-ins_s_xcit-s12-p8_8xb32-300e_coco.py'
MASK2FORMER = 'configs/mask2former/mask2former_xcit-s12-p8_8xb2-lsj-50e_coco.py'
UPERNET = 'configs/upernet/upernet_xcit-s12-p8_8xb2-160k_ade20k-512x512.py'


def run_config(config, kind, data_root, tmp_path, test_args=()):
    path = write_toy_config(os.path.join(ROOT, config), kind, data_root,
                            str(tmp_path / 'toy_config.py'), small_arch=True)
    run = train_and_test(path, str(tmp_path), test_args)
    assert run.train_rc == 0, run.train_log[-3000:]
    assert run.test_rc == 0, run.test_log[-3000:]
    return path, run


def assert_predictions_match_mmdet_api(config, checkpoint, dumped, **cfg_changes):
    """The tool's dumped predictions equal mmdet's ``inference_detector`` on the same images
    with the same checkpoint's state_dict (loaded by mmdet's ``init_detector``)."""
    from mmdet.apis import inference_detector, init_detector
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(cfg_changes)
    model = init_detector(cfg, checkpoint, device='cpu')
    with open(dumped, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 2
    for result in results:
        ours = inference_detector(model, result['img_path']).pred_instances
        theirs = result['pred_instances']
        assert len(ours) == len(theirs['scores']) > 0
        torch.testing.assert_close(ours.scores, theirs['scores'], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours.bboxes, theirs['bboxes'], atol=1e-3, rtol=1e-4)
        assert torch.equal(ours.labels, theirs['labels'])


def test_shrink_to_toy_scales_images_classes_data_and_schedule():
    """Image sizes (pipelines, batch padding; negative YOLOX-style borders too) scale from
    COCO's to the toy images', not the model's own sizes (anchor scales); heads predict the
    toy classes, Mask2Former's class weights keep their "no object" entry; the datasets read
    the toy split; training stops after two iterations."""
    cfg = shrink_to_toy(Config.fromfile(os.path.join(ROOT, MASK2FORMER)), 'coco', 'toy/')
    assert cfg.model.data_preprocessor.batch_augments[0].size == (192, 192)  # 1024 * 0.2
    resize, crop = [t for t in cfg.train_dataloader.dataset.pipeline
                    if t.type in ('RandomResize', 'RandomCrop')]
    assert resize.scale == (192, 192) and resize.ratio_range == (0.1, 2.0)
    assert crop.crop_size == (192, 192)
    head = cfg.model.panoptic_head
    assert head.num_things_classes == 3 and head.loss_cls.class_weight == [1.0] * 3 + [0.1]
    dataset = cfg.train_dataloader.dataset
    assert (dataset.data_root, dataset.ann_file, dataset.data_prefix, dataset.indices) == (
        'toy/', 'annotations/instances_train.json', {'img': 'train/'}, 4)
    assert cfg.test_evaluator.ann_file == 'toy/annotations/instances_val.json'
    assert cfg.train_cfg.max_iters == 2 and cfg.model.backbone.init_cfg is None
    cfg = shrink_to_toy(Config.fromfile(os.path.join(
        ROOT, 'configs/mask_rcnn/mask-rcnn_xcit-s12-p8_fpn_ms-crop-1x_coco.py')), 'coco', 'toy/')
    assert cfg.model.rpn_head.anchor_generator.scales == [8]
    assert cfg.model.roi_head.bbox_head.num_classes == 3
    assert cfg.test_dataloader.dataset.pipeline[1].scale == (267, 160)  # (1333, 800) * 0.2
    assert cfg.train_cfg.max_epochs == 1 and cfg.default_hooks.checkpoint.interval == 1
    node = dict(type='RandomAffine', border=(-320, -320), scaling_ratio_range=(0.1, 2))
    scale_image_sizes(node, 0.2)
    assert node == dict(type='RandomAffine', border=(-64, -64), scaling_ratio_range=(0.1, 2))


def test_building_a_config_leaves_it_as_it_was():
    """mmdet's DeformableDETR (DINO's base) writes share_pred_layer, num_pred_layer and
    as_two_stage into the bbox_head config it is given and refuses a config that has them:
    the tools' pre-run build must not change the config that the runner builds again."""
    cfg = Config.fromfile(os.path.join(ROOT, DINO))
    cfg.merge_from_dict({'model.backbone.arch': 'nano_12', 'model.backbone.init_cfg': None,
                         'model.neck.in_channels': [128] * 3})
    before = cfg.model.to_dict()
    build_model(cfg)
    assert cfg.model.to_dict() == before
    build_model(cfg)  # raised AssertionError ("users should not set them in bbox_head")


def test_dino_trains_and_tests_through_the_tools(toy_coco_root, tmp_path):
    path, run = run_config(DINO, 'coco', toy_coco_root, tmp_path,
                           ['--out', str(tmp_path / 'preds.pkl')])
    assert set(run.metrics) == COCO_BOX_METRICS
    assert_predictions_match_mmdet_api(path, run.checkpoint, tmp_path / 'preds.pkl')


def test_ema_checkpoint_is_evaluated_with_its_averaged_weights(toy_coco_root, tmp_path):
    """RTMDet-Ins trains with mmengine's EMAHook, which saves the averaged weights as the
    checkpoint's state_dict and the raw ones as ema_state_dict: tools/test.py evaluates the
    averaged ones (as mmdet's test tool does), and says so."""
    thresholds = {'model.test_cfg.score_thr': 0.0}  # 2 iterations: every score is low
    path, run = run_config(RTMDET, 'coco', toy_coco_root, tmp_path,
                           ['--out', str(tmp_path / 'preds.pkl'), '--cfg-options',
                            'model.test_cfg.score_thr=0.0'])
    assert ('Evaluating the EMA-averaged weights (the checkpoint\'s state_dict, where EMAHook '
            'saves them; the raw weights in ema_state_dict are not used).') in run.test_log
    assert set(run.metrics) == COCO_BOX_METRICS | COCO_MASK_METRICS
    checkpoint = load_state_dict_file(run.checkpoint)
    raw = {k[len('module.'):]: v for k, v in checkpoint['ema_state_dict'].items()
           if k.startswith('module.')}
    averaged = checkpoint['state_dict']
    assert raw.keys() == averaged.keys()
    assert any(not torch.equal(raw[k], averaged[k]) for k in averaged)
    assert_predictions_match_mmdet_api(path, run.checkpoint, tmp_path / 'preds.pkl',
                                       **thresholds)


def test_drop_ema_hooks_says_which_weights_are_evaluated():
    cfg = Config(dict(custom_hooks=[dict(type='EMAHook', momentum=2e-4),
                                    dict(type='RNGStateHook')]))
    assert drop_ema_hooks(cfg, {'state_dict': {}}) == (
        "the checkpoint's state_dict, where EMAHook saves the averaged weights; the file has no "
        'ema_state_dict (published checkpoints keep state_dict only), so whether they are an '
        'average cannot be told from it')
    assert cfg.custom_hooks == [dict(type='RNGStateHook')]
    assert drop_ema_hooks(Config(dict(custom_hooks=[])), {'state_dict': {}}) is None
    from mmengine.hooks import EMAHook

    class MyEMAHook(EMAHook):
        pass
    cfg = Config(dict(custom_hooks=[dict(type='mmengine.EMAHook'), dict(type=MyEMAHook)]))
    assert drop_ema_hooks(cfg, {'state_dict': {}, 'ema_state_dict': {}}).startswith(
        'the EMA-averaged weights')
    assert cfg.custom_hooks == []


def test_mask2former_trains_and_tests_through_the_tools(toy_coco_root, tmp_path):
    _, run = run_config(MASK2FORMER, 'coco', toy_coco_root, tmp_path)
    assert set(run.metrics) == COCO_BOX_METRICS | COCO_MASK_METRICS


def test_upernet_trains_and_tests_through_the_tools(toy_ade_root, tmp_path):
    """The tool's pixel accuracy equals the one computed here from mmseg's inference API on
    the same checkpoint and the label files (ADE's reduce_zero_label: 0 is ignored)."""
    from mmseg.apis import inference_model, init_model
    path, run = run_config(UPERNET, 'ade', toy_ade_root, tmp_path)
    assert set(run.metrics) == {'aAcc', 'mIoU', 'mAcc'}
    model = init_model(path, run.checkpoint, device='cpu')
    folder = os.path.join(toy_ade_root, 'images/validation')
    correct = labelled = 0
    for name in sorted(os.listdir(folder))[:2]:  # the toy config's test indices
        pred = inference_model(model, os.path.join(folder, name)).pred_sem_seg.data[0].numpy()
        label = np.array(Image.open(os.path.join(
            toy_ade_root, 'annotations/validation', name.replace('.jpg', '.png'))), np.int64)
        keep = label > 0
        correct += int((pred[keep] == label[keep] - 1).sum())
        labelled += int(keep.sum())
    assert run.metrics['aAcc'] == pytest.approx(100 * correct / labelled, abs=0.01)
