"""The configs of the modern heads (DINO, Mask2Former, RTMDet-Ins in mmdet; Mask2Former and
SegFormer's head in mmseg) each train one step on a small synthetic batch with ground truth
(every loss finite, the backbone moved) and predict. XCiT-N12/8 (width 128) stands in for
S12/8 and the heads are shrunk (queries, classes, sampled points, input size) so that the
whole file runs in seconds on a CPU; the configs are otherwise built as they are."""
import math
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import xcit_dense  # noqa: F401
from xcit_dense.engine import build_model, config_scope, fall_back_from_sync_bn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 64, 64
NUM_CLASSES = 3
WIDTH = 128  # XCiT-N12's
M2F_CLASS_WEIGHT = [1.0] * NUM_CLASSES + [0.1]  # the last: no object

# config -> (what it predicts, number of pyramid levels, options making it small: dotted keys
# of its model)
CONFIGS = {
    'configs/dino/dino-4scale_xcit-s12-p8_8xb2-12e_coco.py': ('boxes', 3, {
        'neck.in_channels': [WIDTH] * 3, 'num_queries': 20, 'test_cfg.max_per_img': 10,
        'bbox_head.num_classes': NUM_CLASSES, 'dn_cfg.group_cfg.num_dn_queries': 10}),
    'configs/mask2former/mask2former_xcit-s12-p8_8xb2-lsj-50e_coco.py': ('masks', 4, {
        'panoptic_head.in_channels': [WIDTH] * 4, 'panoptic_head.num_queries': 10,
        'panoptic_head.num_things_classes': NUM_CLASSES,
        'panoptic_head.loss_cls.class_weight': M2F_CLASS_WEIGHT,
        'panoptic_fusion_head.num_things_classes': NUM_CLASSES,
        'train_cfg.num_points': 256, 'test_cfg.max_per_image': 10,
        'data_preprocessor.batch_augments.0.size': (H, W)}),
    'configs/rtmdet/rtmdet-ins_s_xcit-s12-p8_8xb32-300e_coco.py': ('masks', 3, {
        'neck.in_channels': [WIDTH] * 3, 'bbox_head.num_classes': NUM_CLASSES}),
    'configs/mask2former/mask2former_xcit-s12-p8_8xb2-160k_ade20k-512x512.py': ('semantic', 4, {
        'decode_head.in_channels': [WIDTH] * 4, 'decode_head.num_queries': 10,
        'decode_head.num_classes': NUM_CLASSES, 'decode_head.train_cfg.num_points': 256,
        'decode_head.loss_cls.class_weight': M2F_CLASS_WEIGHT,
        'data_preprocessor.size': (H, W)}),
    'configs/segformer/segformer_xcit-s12-p8_8xb2-160k_ade20k-512x512.py': ('semantic', 4, {
        'decode_head.in_channels': [WIDTH] * 4, 'decode_head.num_classes': NUM_CLASSES,
        'data_preprocessor.size': (H, W)}),
}


def small_config(path, options):
    cfg = Config.fromfile(os.path.join(ROOT, path))
    cfg.merge_from_dict({'model.backbone.arch': 'nano_12', 'model.backbone.init_cfg': None,
                         **{f'model.{k}': v for k, v in options.items()}})
    fall_back_from_sync_bn(cfg)  # SyncBN -> BN on this CPU
    return cfg


def get_key(node, dotted):
    for key in dotted.split('.'):
        node = node[key]
    return node


def det_batch():
    from mmdet.testing import demo_mm_inputs
    batch = demo_mm_inputs(2, [[3, H, W]] * 2, num_items=[3, 2], num_classes=NUM_CLASSES,
                           with_mask=True)
    for sample in batch['data_samples']:
        sample.set_metainfo(dict(scale_factor=(1., 1.)))  # unscaled: predictions are H x W
    return batch


def seg_batch():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    meta = dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(H, W), scale_factor=(1., 1.))
    samples = []
    for _ in range(2):
        labels = torch.randint(0, NUM_CLASSES, (1, H, W))
        labels[:, H // 2:, W // 2:] = 255  # an ignored corner
        samples.append(SegDataSample(metainfo=meta, gt_sem_seg=PixelData(data=labels)))
    inputs = [torch.randint(0, 256, (3, H, W), dtype=torch.uint8) for _ in range(2)]
    return dict(inputs=inputs, data_samples=samples)


def test_every_config_is_covered():
    here = {os.path.relpath(os.path.join(folder, name), ROOT)
            for sub in ('dino', 'mask2former', 'rtmdet', 'segformer')
            for folder, _, names in os.walk(os.path.join(ROOT, 'configs', sub))
            for name in names if name.endswith('.py')}
    assert here == set(CONFIGS)


@pytest.mark.parametrize('path', list(CONFIGS), ids=lambda p: os.path.basename(p)[:-3])
def test_one_training_step_and_a_prediction(path):
    kind, levels, options = CONFIGS[path]
    full = Config.fromfile(os.path.join(ROOT, path))
    assert full.model.backbone.type == 'XCiT' and full.model.backbone.arch == 'small_12'
    assert len(full.model.backbone.get('out_strides', (4, 8, 16, 32))) == levels
    widths = [k for k, v in options.items() if v == [WIDTH] * levels]
    assert len(widths) == 1  # the neck's or head's input widths: S12's in the config
    assert get_key(full.model, widths[0]) == [384] * levels
    # XCiT's input (RGB, ImageNet statistics), optimizer rules and our hooks, whatever the base
    preprocessor = full.model.data_preprocessor
    assert preprocessor.bgr_to_rgb and preprocessor.mean == [123.675, 116.28, 103.53]
    assert full.optim_wrapper.constructor == 'NoDecayOptimWrapperConstructor'
    assert {'RNGStateHook', 'NonFiniteLossHook'} <= {h.type for h in full.custom_hooks}
    cfg = small_config(path, options)
    scope = config_scope(cfg)
    model = build_model(cfg)
    model.init_weights()  # as the runner does (DINO's level_embed, for one, is torch.empty)
    assert model.backbone.out_strides == (4, 8, 16, 32)[-levels:]
    assert model.backbone.out_channels == (WIDTH,) * levels
    data = seg_batch() if kind == 'semantic' else det_batch()

    # the earliest backbone parameter; it takes no weight decay, so only a gradient moves it
    probe = model.backbone.pos_embed.token_projection.weight
    before = probe.detach().clone()
    with DefaultScope.overwrite_default_scope(scope):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        model.train()
        losses = {k: v.item() for k, v in model.train_step(data, optim_wrapper).items()}
    print(f'\n{os.path.basename(path)} one-step losses:',
          ', '.join(f'{k}: {v:.4f}' for k, v in losses.items()))
    assert all(math.isfinite(v) for v in losses.values()), losses
    assert losses['loss'] > 0
    assert not torch.equal(probe.detach(), before)

    model.eval()
    with torch.no_grad(), DefaultScope.overwrite_default_scope(scope):
        results = model.test_step(data)
    assert len(results) == 2
    for result in results:
        if kind == 'semantic':
            assert result.pred_sem_seg.data.shape == (1, H, W)
            assert ((result.pred_sem_seg.data >= 0)
                    & (result.pred_sem_seg.data < NUM_CLASSES)).all()
            continue
        pred = result.pred_instances
        n = len(pred.scores)
        assert pred.bboxes.shape == (n, 4) and pred.labels.shape == (n,)
        assert ((pred.labels >= 0) & (pred.labels < NUM_CLASSES)).all()
        if kind == 'masks':
            assert pred.masks.shape == (n, H, W)
