"""Our configs against the XCiT release's configs of the same names, field by field.

The release (github.com/facebookresearch/xcit, configs at commit 9a7df94; mmdet 2.11 / mmseg
0.11, mmcv 1.3) has 24 dense configs: 8 Mask R-CNN 3x, 8 Semantic FPN 80k, 8 UperNet 160k. Each name
exists here as an alias, ``configs/xcit/<the release's path>``, that inherits ours. The
release's values are held below AS DATA, in the release's own (mmcv 1.x) terms, one dict per
config name; each test loads our alias with ``Config.fromfile`` (no model is built), restates
it in those terms (``optim_wrapper.optimizer`` -> ``optimizer``, ``param_scheduler`` ->
``lr_config``, ``train_cfg`` -> ``runner``, the pipelines -> their crop and scale entries,
``train_dataloader.batch_size`` -> ``data.samples_per_gpu``) and asserts every field equal.

Where we differ on purpose the release's value stays in the data and the test asserts our value
explicitly, with the reason (docs/user_guides/train_and_test.md, sections "Detection (mmdet)"
and "Segmentation (mmseg)"):

* Mask R-CNN precision: the release trained with apex mixed precision (its configs'
  ``DistOptimizerHook(use_fp16=True)`` and ``EpochBasedRunnerAmp``, parts of Swin's code base
  that the release does not ship, facebookresearch/xcit#10); ours train fp32, with AMP one
  flag away (``--amp``, or the ``*amp*`` configs: torch autocast, not apex).
* Weight decay: the release's ``paramwise_cfg`` exempts only names containing ``norm`` (its
  other two keys are Swin's and match no XCiT parameter); ours exempts every norm layer, the
  XCA temperatures, the LayerScale gammas and the positional encoding. The second half of this
  file builds both rules' optimizer groups on real models and checks the difference exactly.
* The release's ``mask_rcnn_xcit_medium_24_p16_3x_coco.py`` sets ``patch_size=8`` (sic); ours
  is a /16 model.
* Schedules: mmengine's LinearLR and PolyLR reach their end value one iteration before
  ``end`` (``total_iters = end - begin - 1``), mmcv 1.x's warm-up and poly at ``warmup_iters``
  and ``max_iters``: our warm-up is full at iteration 499 (1499) instead of 500 (1500), and the
  poly decay reaches 0 at the last iteration instead of one after it. ``test_lr_schedule``
  steps the schedulers and checks each iteration's LR.
"""
import copy
import functools
import inspect
import math
import os
import re
import warnings

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, DefaultScope

import xcit_dense  # noqa: F401
from xcit_dense.engine import fall_back_from_sync_bn
from xcit_dense.models.xcit import DEFAULT_OUT_INDICES, XCiT, resolve_arch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------------------------
# The release's values.
# ---------------------------------------------------------------------------------------------

_MEAN_STD = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
# Both tasks: detection/configs/xcit/*.py and semantic_segmentation/configs/xcit/*/*.py,
#   optimizer = dict(..., paramwise_cfg=dict(custom_keys={...}))
RELEASE_NO_DECAY_KEYS = {'absolute_pos_embed': dict(decay_mult=0.),
                         'relative_position_bias_table': dict(decay_mult=0.),
                         'norm': dict(decay_mult=0.)}
_SCALES = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
           (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)]

# detection/configs/_base_/models/mask_rcnn_xcit_p{8,16}.py, _base_/datasets/coco_instance.py,
# _base_/schedules/schedule_1x.py, overridden by detection/configs/xcit/mask_rcnn_*_3x_coco.py
# (optimizer, lr_config, runner, optimizer_config, train_pipeline, roi extractors);
# detection/backbone/xcit.py: dpr = [drop_path_rate for i in range(depth)], nn.SyncBatchNorm.
_MASK_RCNN_3X = dict(
    neck=dict(out_channels=256, num_outs=5),
    roi_featmap_strides=dict(bbox=[4, 8, 16, 32], mask=[4, 8, 16, 32]),
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05,
                   paramwise_cfg=dict(custom_keys=RELEASE_NO_DECAY_KEYS)),
    # DistOptimizerHook(update_interval=1, grad_clip=None, ..., use_fp16=True) with
    # runner EpochBasedRunnerAmp: apex mixed precision
    optimizer_config=dict(grad_clip=None, use_fp16=True),
    # schedule_1x.py's policy and warm-up; the xcit configs' step=[27, 33]; mmcv's gamma 0.1
    lr_config=dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001,
                   step=[27, 33], gamma=0.1),
    runner=dict(max_epochs=36),
    # RandomFlip(flip_ratio=0.5), then AutoAugment with two policies. The second policy's
    # last Resize also has override=True, mmdet 2.x's way of letting a second Resize pick a
    # new scale; mmdet 3.x's RandomChoiceResize always picks anew.
    train_pipeline=dict(
        flip_ratio=0.5,
        policies=[
            [dict(type='Resize', img_scale=_SCALES, multiscale_mode='value', keep_ratio=True)],
            [dict(type='Resize', img_scale=[(400, 1333), (500, 1333), (600, 1333)],
                  multiscale_mode='value', keep_ratio=True),
             dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                  allow_negative_crop=True),
             dict(type='Resize', img_scale=_SCALES, multiscale_mode='value', keep_ratio=True)],
        ]),
    # MultiScaleFlipAug(img_scale=(1333, 800), flip=False, Resize(keep_ratio=True))
    test_pipeline=dict(img_scale=(1333, 800), flip=False, keep_ratio=True),
    img_norm_cfg=_MEAN_STD,
    pad_size_divisor=32,
    data=dict(samples_per_gpu=2),
)

# semantic_segmentation/configs/_base_/datasets/ade20k.py, _base_/schedules/schedule_80k.py
# and schedule_160k.py (optimizer_config = dict(): no fp16), overridden by
# semantic_segmentation/configs/xcit/{sem_fpn,upernet}/*.py (optimizer, lr_config,
# data=dict(samples_per_gpu=2)); semantic_segmentation/backbone/xcit.py as for detection.
_ADE20K = dict(
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01,
                   paramwise_cfg=dict(custom_keys=RELEASE_NO_DECAY_KEYS)),
    optimizer_config=dict(grad_clip=None, use_fp16=False),
    lr_config=dict(policy='poly', warmup='linear', warmup_iters=1500, warmup_ratio=1e-6,
                   power=1.0, min_lr=0.0, by_epoch=False),
    # Resize(img_scale=(2048, 512), ratio_range=(0.5, 2.0)),
    # RandomCrop(crop_size=(512, 512), cat_max_ratio=0.75), RandomFlip(prob=0.5),
    # PhotoMetricDistortion, Pad(size=crop_size, pad_val=0, seg_pad_val=255)
    train_pipeline=dict(
        order=['Resize', 'RandomCrop', 'RandomFlip', 'PhotoMetricDistortion'],
        img_scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True,
        crop_size=(512, 512), cat_max_ratio=0.75, flip_prob=0.5,
        pad_size=(512, 512), pad_val=0, seg_pad_val=255, reduce_zero_label=True),
    # MultiScaleFlipAug(img_scale=(2048, 512), flip=False, Resize(keep_ratio=True));
    # test_cfg=dict(mode='whole')
    test_pipeline=dict(img_scale=(2048, 512), flip=False, keep_ratio=True, mode='whole'),
    img_norm_cfg=_MEAN_STD,
    data=dict(samples_per_gpu=2),
)
_HEAD_NORM = dict(type='SyncBN', requires_grad=True)
# semantic_segmentation/configs/_base_/models/sem_fpn_xcit_p{8,16}.py
_SEM_FPN_80K = dict(_ADE20K, runner=dict(max_iters=80000))
# semantic_segmentation/configs/_base_/models/upernet_xcit_p{8,16}.py
_UPERNET_160K = dict(_ADE20K, runner=dict(max_iters=160000))

# The backbones (each config's model.backbone; out_indices, eta and drop_path_rate as set there).
_T12 = dict(embed_dim=192, depth=12, num_heads=4, eta=1.0, out_indices=[3, 5, 7, 11])
_S12 = dict(embed_dim=384, depth=12, num_heads=8, eta=1.0, out_indices=[3, 5, 7, 11])
_S24 = dict(embed_dim=384, depth=24, num_heads=8, eta=1e-5, out_indices=[7, 11, 15, 23])
_M24 = dict(embed_dim=512, depth=24, num_heads=8, eta=1e-5, out_indices=[7, 11, 15, 23])


def _backbone(arch, patch_size, drop_path_rate):
    return dict(type='XCiT', patch_size=patch_size, mlp_ratio=4, qkv_bias=True,
                drop_path_rate=drop_path_rate, drop_path_per_block='constant', norm='SyncBN',
                **arch)


def _mask_rcnn(arch, patch_size, drop_path_rate):
    width = arch['embed_dim']
    return dict(_MASK_RCNN_3X, backbone=_backbone(arch, patch_size, drop_path_rate),
                neck=dict(_MASK_RCNN_3X['neck'], in_channels=[width] * 4))


def _sem_fpn(arch, patch_size, drop_path_rate, fpn_channels):
    return dict(
        _SEM_FPN_80K, backbone=_backbone(arch, patch_size, drop_path_rate),
        neck=dict(type='FPN', in_channels=[arch['embed_dim']] * 4, out_channels=fpn_channels,
                  num_outs=4),
        decode_head=dict(type='FPNHead', in_channels=[fpn_channels] * 4, in_index=[0, 1, 2, 3],
                         feature_strides=[4, 8, 16, 32], channels=128, dropout_ratio=0.1,
                         num_classes=150, norm_cfg=_HEAD_NORM, align_corners=False))


def _upernet(arch, patch_size, drop_path_rate):
    width = arch['embed_dim']
    return dict(
        _UPERNET_160K, backbone=_backbone(arch, patch_size, drop_path_rate),
        decode_head=dict(type='UPerHead', in_channels=[width] * 4, in_index=[0, 1, 2, 3],
                         pool_scales=(1, 2, 3, 6), channels=512, dropout_ratio=0.1,
                         num_classes=150, norm_cfg=_HEAD_NORM, align_corners=False),
        auxiliary_head=dict(type='FCNHead', in_channels=width, in_index=2, channels=256,
                            num_convs=1, concat_input=False, dropout_ratio=0.1, num_classes=150,
                            norm_cfg=_HEAD_NORM, align_corners=False, loss_weight=0.4))


RELEASE = {
    # detection/configs/xcit/
    'mask_rcnn_xcit_tiny_12_p16_3x_coco': _mask_rcnn(_T12, 16, 0.0),
    'mask_rcnn_xcit_tiny_12_p8_3x_coco': _mask_rcnn(_T12, 8, 0.0),
    'mask_rcnn_xcit_small_12_p16_3x_coco': _mask_rcnn(_S12, 16, 0.05),
    'mask_rcnn_xcit_small_12_p8_3x_coco': _mask_rcnn(_S12, 8, 0.05),
    'mask_rcnn_xcit_small_24_p16_3x_coco': _mask_rcnn(_S24, 16, 0.1),
    'mask_rcnn_xcit_small_24_p8_3x_coco': _mask_rcnn(_S24, 8, 0.1),
    'mask_rcnn_xcit_medium_24_p16_3x_coco': _mask_rcnn(_M24, 8, 0.15),  # patch_size=8 (sic)
    'mask_rcnn_xcit_medium_24_p8_3x_coco': _mask_rcnn(_M24, 8, 0.15),
    # semantic_segmentation/configs/xcit/sem_fpn/ (FPN out_channels: the base's 384 for S12
    # and S24, set to 192 for T12 and 512 for M24)
    'sem_fpn/sem_fpn_xcit_tiny_12_p16_80k_ade20k': _sem_fpn(_T12, 16, 0.0, 192),
    'sem_fpn/sem_fpn_xcit_tiny_12_p8_80k_ade20k': _sem_fpn(_T12, 8, 0.0, 192),
    'sem_fpn/sem_fpn_xcit_small_12_p16_80k_ade20k': _sem_fpn(_S12, 16, 0.05, 384),
    'sem_fpn/sem_fpn_xcit_small_12_p8_80k_ade20k': _sem_fpn(_S12, 8, 0.05, 384),
    'sem_fpn/sem_fpn_xcit_small_24_p16_80k_ade20k': _sem_fpn(_S24, 16, 0.1, 384),
    'sem_fpn/sem_fpn_xcit_small_24_p8_80k_ade20k': _sem_fpn(_S24, 8, 0.1, 384),
    'sem_fpn/sem_fpn_xcit_medium_24_p16_80k_ade20k': _sem_fpn(_M24, 16, 0.2, 512),
    'sem_fpn/sem_fpn_xcit_medium_24_p8_80k_ade20k': _sem_fpn(_M24, 8, 0.2, 512),
    # semantic_segmentation/configs/xcit/upernet/ (M24's channels=512 is the base's value)
    'upernet/upernet_xcit_tiny_12_p16_160k_ade20k': _upernet(_T12, 16, 0.0),
    'upernet/upernet_xcit_tiny_12_p8_160k_ade20k': _upernet(_T12, 8, 0.0),
    'upernet/upernet_xcit_small_12_p16_160k_ade20k': _upernet(_S12, 16, 0.05),
    'upernet/upernet_xcit_small_12_p8_160k_ade20k': _upernet(_S12, 8, 0.05),
    'upernet/upernet_xcit_small_24_p16_160k_ade20k': _upernet(_S24, 16, 0.1),
    'upernet/upernet_xcit_small_24_p8_160k_ade20k': _upernet(_S24, 8, 0.1),
    'upernet/upernet_xcit_medium_24_p16_160k_ade20k': _upernet(_M24, 16, 0.15),
    'upernet/upernet_xcit_medium_24_p8_160k_ade20k': _upernet(_M24, 8, 0.15),
}

# Our weight-decay rule (configs/_base_/schedules/adamw_3x.py, adamw_poly-80k.py): norms by
# paramwise_cfg, and what the backbone's no_weight_decay() names by the constructor.
OUR_PARAMWISE_CFG = dict(norm_decay_mult=0.)
OUR_CONSTRUCTOR = 'NoDecayOptimWrapperConstructor'


# ---------------------------------------------------------------------------------------------
# Our configs, restated in the release's terms.
# ---------------------------------------------------------------------------------------------

def _plain(value):
    """Config values as plain Python (ConfigDict -> dict, tuple -> list) for comparison."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _one(transforms, type_):
    found = [t for t in transforms if t['type'] == type_]
    assert len(found) == 1, f'expected one {type_} in {[t["type"] for t in transforms]}'
    return found[0]


def _our_backbone(cfg):
    bb = cfg.model.backbone
    arch = resolve_arch(bb.arch)
    defaults = {k: p.default for k, p in inspect.signature(XCiT.__init__).parameters.items()}
    return dict(
        type=bb.type, patch_size=bb.patch_size,
        mlp_ratio=bb.get('mlp_ratio', defaults['mlp_ratio']),
        qkv_bias=bb.get('qkv_bias', defaults['qkv_bias']),
        drop_path_rate=bb.get('drop_path_rate', arch['drop_path_rate']),  # default: the preset's
        drop_path_per_block=bb.get('drop_path_schedule', defaults['drop_path_schedule']),
        norm=bb.norm_cfg.type, embed_dim=arch['embed_dim'], depth=arch['depth'],
        num_heads=arch['num_heads'], eta=arch['eta'],
        out_indices=list(bb.get('out_indices') or DEFAULT_OUT_INDICES[arch['depth']]))


def _our_optimizer(cfg):
    opt = cfg.optim_wrapper.optimizer
    return dict(type=opt.type, lr=opt.lr, betas=opt.betas, weight_decay=opt.weight_decay,
                paramwise_cfg=cfg.optim_wrapper.paramwise_cfg)


def _our_optimizer_config(cfg):
    wrapper = cfg.optim_wrapper
    assert wrapper.type in ('OptimWrapper', 'AmpOptimWrapper')
    return dict(grad_clip=wrapper.get('clip_grad'), use_fp16=wrapper.type == 'AmpOptimWrapper')


def _span(scheduler, begin, end, by_epoch):
    """'' when the scheduler runs over [begin, end) in the given unit, else what it does (so a
    policy that differs from the release's shows as a differing field, not a crash)."""
    if (scheduler.begin, scheduler.end, bool(scheduler.by_epoch)) == (begin, end, by_epoch):
        return ''
    unit = 'epochs' if scheduler.by_epoch else 'iterations'
    return f' over {unit} [{scheduler.begin}, {scheduler.end})'


def _warmup(schedulers):
    warm = _one(schedulers, 'LinearLR')
    end_factor = warm.get('end_factor', 1.0)
    return dict(warmup='linear' + _span(warm, 0, warm.end, False)
                + ('' if end_factor == 1.0 else f' to {end_factor}'),
                warmup_iters=warm.end - warm.begin, warmup_ratio=warm.start_factor)


def _our_det_lr_config(cfg):
    assert len(cfg.param_scheduler) == 2, cfg.param_scheduler
    steps = _one(cfg.param_scheduler, 'MultiStepLR')
    return dict(policy='step' + _span(steps, 0, cfg.train_cfg.max_epochs, True),
                **_warmup(cfg.param_scheduler), step=steps.milestones, gamma=steps.gamma)


def _our_seg_lr_config(cfg):
    assert len(cfg.param_scheduler) == 2, cfg.param_scheduler
    poly = _one(cfg.param_scheduler, 'PolyLR')
    # mmcv 1.x's poly runs over the whole training from iteration 0 (the warm-up multiplies
    # it); ours must span the same iterations to be the same policy.
    return dict(policy='poly' + _span(poly, 0, cfg.train_cfg.max_iters, False),
                **_warmup(cfg.param_scheduler), power=poly.power, min_lr=poly.eta_min,
                by_epoch=bool(poly.by_epoch))


def _det_step(t):
    if t['type'] == 'RandomChoiceResize':
        return dict(type='Resize', img_scale=t['scales'], multiscale_mode='value',
                    keep_ratio=t['keep_ratio'])
    assert t['type'] == 'RandomCrop', t
    return dict(type='RandomCrop', crop_type=t['crop_type'], crop_size=t['crop_size'],
                allow_negative_crop=t['allow_negative_crop'])


def _our_mask_rcnn(cfg):
    model = cfg.model
    train = cfg.train_dataloader.dataset.pipeline
    types = [t.type for t in train]
    choice = _one(train, 'RandomChoice')
    assert types.index('RandomFlip') < types.index('RandomChoice')  # the release's order
    resize = _one(cfg.test_dataloader.dataset.pipeline, 'Resize')
    flips = [t for t in cfg.test_dataloader.dataset.pipeline if 'Flip' in t.type]
    return dict(
        backbone=_our_backbone(cfg),
        neck=dict(in_channels=model.neck.in_channels, out_channels=model.neck.out_channels,
                  num_outs=model.neck.num_outs),
        roi_featmap_strides=dict(
            bbox=model.roi_head.bbox_roi_extractor.featmap_strides,
            mask=model.roi_head.mask_roi_extractor.featmap_strides),
        optimizer=_our_optimizer(cfg),
        optimizer_config=_our_optimizer_config(cfg),
        lr_config=_our_det_lr_config(cfg),
        runner=dict(max_epochs=cfg.train_cfg.max_epochs),
        train_pipeline=dict(
            flip_ratio=_one(train, 'RandomFlip').prob,
            policies=[[_det_step(t) for t in policy] for policy in choice.transforms]),
        test_pipeline=dict(img_scale=resize.scale, flip=bool(flips),
                           keep_ratio=resize.keep_ratio),
        img_norm_cfg=dict(mean=model.data_preprocessor.mean, std=model.data_preprocessor.std,
                          to_rgb=model.data_preprocessor.bgr_to_rgb),
        pad_size_divisor=model.data_preprocessor.pad_size_divisor,
        data=dict(samples_per_gpu=cfg.train_dataloader.batch_size),
    )


def _head(head):
    out = {k: v for k, v in head.items() if k != 'loss_decode'}
    if head.get('loss_decode', {}).get('loss_weight', 1.0) != 1.0:
        out['loss_weight'] = head.loss_decode.loss_weight
    return out


def _our_segmentor(cfg):
    model = cfg.model
    train = cfg.train_dataloader.dataset.pipeline
    renamed = {'RandomResize': 'Resize'}
    order = [renamed.get(t.type, t.type) for t in train
             if t.type in ('RandomResize', 'RandomCrop', 'RandomFlip', 'PhotoMetricDistortion')]
    resize, crop = _one(train, 'RandomResize'), _one(train, 'RandomCrop')
    test = cfg.test_dataloader.dataset.pipeline
    test_resize = _one(test, 'Resize')
    prep = model.data_preprocessor
    ours = dict(
        backbone=_our_backbone(cfg),
        decode_head=_head(model.decode_head),
        optimizer=_our_optimizer(cfg),
        optimizer_config=_our_optimizer_config(cfg),
        lr_config=_our_seg_lr_config(cfg),
        runner=dict(max_iters=cfg.train_cfg.max_iters),
        train_pipeline=dict(
            order=order, img_scale=resize.scale, ratio_range=resize.ratio_range,
            keep_ratio=resize.keep_ratio, crop_size=crop.crop_size,
            cat_max_ratio=crop.cat_max_ratio, flip_prob=_one(train, 'RandomFlip').prob,
            pad_size=prep.size, pad_val=prep.pad_val, seg_pad_val=prep.seg_pad_val,
            reduce_zero_label=_one(train, 'LoadAnnotations').reduce_zero_label),
        test_pipeline=dict(img_scale=test_resize.scale,
                           flip=any('Flip' in t.type for t in test),
                           keep_ratio=test_resize.keep_ratio, mode=model.test_cfg.mode),
        img_norm_cfg=dict(mean=prep.mean, std=prep.std, to_rgb=prep.bgr_to_rgb),
        data=dict(samples_per_gpu=cfg.train_dataloader.batch_size),
    )
    if model.get('neck'):
        ours['neck'] = dict(type=model.neck.type, in_channels=model.neck.in_channels,
                            out_channels=model.neck.out_channels, num_outs=model.neck.num_outs)
    if model.get('auxiliary_head'):
        ours['auxiliary_head'] = _head(model.auxiliary_head)
    return ours


@functools.lru_cache(maxsize=None)
def _load(name):
    """Our config of a release name (cached: callers must not modify it)."""
    return Config.fromfile(os.path.join(ROOT, 'configs/xcit', name + '.py'))


def _differences(ours, release):
    assert set(ours) == set(release), (sorted(ours), sorted(release))
    wrong = {}
    for key, value in release.items():
        if isinstance(value, dict) and isinstance(ours[key], dict):
            for field, want in value.items():
                have = _plain(ours[key].get(field, '<missing>'))
                if have != _plain(want):
                    wrong[f'{key}.{field}'] = (have, _plain(want))
        elif _plain(ours[key]) != _plain(value):
            wrong[key] = (_plain(ours[key]), _plain(value))
    return wrong


# ---------------------------------------------------------------------------------------------
# The tests: fields.
# ---------------------------------------------------------------------------------------------

def test_every_release_config_has_an_alias():
    assert len(RELEASE) == 24
    for name in RELEASE:
        assert os.path.isfile(os.path.join(ROOT, 'configs/xcit', name + '.py')), name


@pytest.mark.parametrize('name', sorted(RELEASE))
def test_recipe_matches_release(name):
    cfg = _load(name)
    release = RELEASE[name]
    ours = _our_mask_rcnn(cfg) if name.startswith('mask_rcnn') else _our_segmentor(cfg)
    wrong = _differences(ours, release)

    # Differences on purpose, asserted explicitly (see the module docstring and
    # docs/user_guides/train_and_test.md).
    # 1. Weight decay: our rule, not the release's 'norm' substring rule (the docs'
    #    "Detection"/"Segmentation" recipe paragraphs; test_weight_decay_* below).
    assert wrong.pop('optimizer.paramwise_cfg') == (
        _plain(OUR_PARAMWISE_CFG), _plain(dict(custom_keys=RELEASE_NO_DECAY_KEYS)))
    assert _plain(cfg.optim_wrapper.paramwise_cfg) == _plain(OUR_PARAMWISE_CFG)
    assert cfg.optim_wrapper.constructor == OUR_CONSTRUCTOR
    if name.startswith('mask_rcnn'):
        # 2. Precision: the release's Mask R-CNN used apex fp16 (Swin's DistOptimizerHook and
        #    EpochBasedRunnerAmp, not shipped with the release: facebookresearch/xcit#10); ours
        #    train fp32 and take AMP (torch autocast) with --amp or the *amp* configs.
        assert wrong.pop('optimizer_config.use_fp16') == (False, True)
        assert cfg.optim_wrapper.type == 'OptimWrapper'
    if name == 'mask_rcnn_xcit_medium_24_p16_3x_coco':
        # 3. The release's M24/16 Mask R-CNN config says patch_size=8 although its name, base
        #    model (mask_rcnn_xcit_p16.py), README row and checkpoint name say /16, and its
        #    46.7 box AP is well below M24/8's 48.5; ours is the /16 model.
        assert wrong.pop('backbone.patch_size') == (16, 8)
    assert not wrong, '\n'.join(f'{k}: ours {o!r}, release {r!r}' for k, (o, r) in wrong.items())


def test_amp_configs_are_the_release_recipe_in_mixed_precision():
    # The --amp route to the release's fp16 training: the same recipe under AmpOptimWrapper.
    for amp, plain in [
            ('mask_rcnn/mask-rcnn_xcit-s12-p8_fpn_amp-ms-crop-3x_coco.py',
             'mask_rcnn_xcit_small_12_p8_3x_coco'),
            ('sem_fpn/fpn_xcit-s12-p8_8xb2-amp-80k_ade20k-512x512.py',
             'sem_fpn/sem_fpn_xcit_small_12_p8_80k_ade20k'),
            ('upernet/upernet_xcit-s12-p8_8xb2-amp-160k_ade20k-512x512.py',
             'upernet/upernet_xcit_small_12_p8_160k_ade20k')]:
        cfg = Config.fromfile(os.path.join(ROOT, 'configs', amp))
        ours = _our_mask_rcnn(cfg) if amp.startswith('mask') else _our_segmentor(cfg)
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert ours['optimizer_config']['use_fp16'] is True
        assert ours['optimizer'] == _our_optimizer(_load(plain))


# ---------------------------------------------------------------------------------------------
# The tests: the learning rate at every iteration, mmengine's schedulers against mmcv 1.x's.
# ---------------------------------------------------------------------------------------------

def _mmcv_lr(release, t, epoch):
    """mmcv 1.3's LR at iteration t (0-based) in ``epoch``: LrUpdaterHook with a linear
    warm-up (warmup_lr = regular_lr * (1 - (1 - t / warmup_iters) * (1 - warmup_ratio))) over
    StepLrUpdaterHook or PolyLrUpdaterHook (by_epoch=False: progress t over max_iters)."""
    lr_config, base = release['lr_config'], release['optimizer']['lr']
    if lr_config['policy'] == 'step':
        regular = base * lr_config['gamma'] ** sum(epoch >= s for s in lr_config['step'])
    else:
        coeff = (1 - t / release['runner']['max_iters']) ** lr_config['power']
        regular = (base - lr_config['min_lr']) * coeff + lr_config['min_lr']
    if t < lr_config['warmup_iters']:
        k = (1 - t / lr_config['warmup_iters']) * (1 - lr_config['warmup_ratio'])
        return regular * (1 - k)
    return regular


@pytest.mark.parametrize('name, epoch_length', [
    ('mask_rcnn_xcit_small_12_p8_3x_coco', 100),  # warm-up over 5 epochs: both rules overlap
    ('sem_fpn/sem_fpn_xcit_small_12_p8_80k_ade20k', None),
    ('upernet/upernet_xcit_small_12_p8_160k_ade20k', None)])
def test_lr_schedule(name, epoch_length):
    """Step our param_scheduler as mmengine's runner does (iteration schedulers after each
    iteration, epoch schedulers after each epoch) and compare every iteration's LR with the
    release's (mmcv 1.x) formula, taken with mmengine's convention: a scheduler reaches its
    end value at iteration end - 1. (The other configs' schedulers equal these three's:
    test_recipe_matches_release.)"""
    cfg, release = _load(name), RELEASE[name]
    param = torch.zeros(1, requires_grad=True)
    wrapper = OptimWrapper(torch.optim.AdamW([param], lr=cfg.optim_wrapper.optimizer.lr))
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper))
                  for s in cfg.param_scheduler]
    if epoch_length is None:
        iters, epoch_length = cfg.train_cfg.max_iters, cfg.train_cfg.max_iters
    else:
        iters = epoch_length * cfg.train_cfg.max_epochs
    # mmengine's convention, our documented difference: the warm-up and the poly decay end
    # one iteration early (they would equal the release's exactly with end + 1).
    as_mmengine = dict(release, lr_config=dict(
        release['lr_config'], warmup_iters=release['lr_config']['warmup_iters'] - 1))
    if 'runner' in release and 'max_iters' in release['runner']:
        as_mmengine['runner'] = dict(max_iters=release['runner']['max_iters'] - 1)
    lrs = []
    with warnings.catch_warnings():  # 'scheduler.step() before optimizer.step()': no training
        warnings.simplefilter('ignore', UserWarning)
        for t in range(iters):
            lrs.append(wrapper.optimizer.param_groups[0]['lr'])
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
            if (t + 1) % epoch_length == 0:
                for s in schedulers:
                    if s.by_epoch:
                        s.step()
    # float equality, up to the rounding of mmengine's chained (multiplicative) updates
    wrong = [(t, lr, _mmcv_lr(as_mmengine, t, t // epoch_length)) for t, lr in enumerate(lrs)
             if not math.isclose(lr, _mmcv_lr(as_mmengine, t, t // epoch_length), rel_tol=1e-9)]
    assert not wrong, wrong[:5]
    # The release's own LR: at the start; for detection also at every iteration after the
    # warm-up (the step schedule has no end to be off by one).
    assert math.isclose(lrs[0], _mmcv_lr(release, 0, 0), rel_tol=1e-9)
    if release['lr_config']['policy'] == 'step':
        warm = release['lr_config']['warmup_iters']
        assert all(math.isclose(lr, _mmcv_lr(release, t, t // epoch_length), rel_tol=1e-9)
                   for t, lr in enumerate(lrs) if t >= warm)


# ---------------------------------------------------------------------------------------------
# The tests: which parameters decay, under our rule and under the release's.
# ---------------------------------------------------------------------------------------------

def release_weight_decay(name, base_wd):
    """The release's weight decay of a parameter (its full name in the release's model), as
    mmcv 1.3's DefaultOptimizerConstructor gives it with the release's paramwise_cfg: custom
    keys, longest first, matched as substrings of the full name; the first match sets
    weight_decay = base_wd * decay_mult. No other rule is set (no norm_decay_mult,
    bias_decay_mult or dwconv_decay_mult), so everything else decays."""
    keys = RELEASE_NO_DECAY_KEYS
    for key in sorted(sorted(keys), key=len, reverse=True):
        if key in name:
            return base_wd * keys[key]['decay_mult']
    return base_wd


def release_name(name):
    """Our parameter name as the release's model calls it: its backbone keeps the positional
    encoding in ``pos_embeder`` and the pyramid in ``fpn1`` ... ``fpn4``; its necks and heads
    have our names (xcit_dense/checkpoint/xcit.py)."""
    name = re.sub(r'^backbone\.pos_embed\.', 'backbone.pos_embeder.', name)
    return re.sub(r'^backbone\.pyramid\.(\d)\.', lambda m: f'backbone.fpn{int(m[1]) + 1}.', name)


def _weight_decays(model, optim_wrapper_cfg):
    """{parameter name: weight decay} of the optimizer our config builds for ``model``."""
    wrapper = build_optim_wrapper(model, optim_wrapper_cfg)
    by_id = {id(p): group['weight_decay'] for group in wrapper.optimizer.param_groups
             for p in group['params']}
    return {n: by_id[id(p)] for n, p in model.named_parameters()}


# The schedules' one-line override for following the release's rule exactly, as a user's
# config inheriting ours would write it.
FOLLOW_THE_RELEASE = ("optim_wrapper = dict(constructor='DefaultOptimWrapperConstructor', "
                      "paramwise_cfg=dict(\n"
                      "    _delete_=True, custom_keys={'norm': dict(decay_mult=0.)}))\n")


def _build(name, **overrides):
    """The model of a release name's config with an XCiT-N12 backbone, and the weight decay
    of each parameter under our rule and under FOLLOW_THE_RELEASE."""
    cfg = copy.deepcopy(_load(name))
    path = os.path.join(ROOT, 'configs/xcit', name + '.py')
    following = Config.fromstring(f'_base_ = {path!r}\n' + FOLLOW_THE_RELEASE, '.py')
    cfg.model.backbone.update(arch='nano_12', init_cfg=None)
    cfg.merge_from_dict(overrides)
    fall_back_from_sync_bn(cfg)
    scope = 'mmdet' if name.startswith('mask_rcnn') else 'mmseg'
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
        return (model, _weight_decays(model, cfg.optim_wrapper),
                _weight_decays(model, following.optim_wrapper))


def _kind(model, name):
    """What a parameter is, by module type and name: 'layernorm', 'batchnorm', 'temperature',
    'gamma', 'pos_embed' or 'other'."""
    module = model.get_submodule(name.rsplit('.', 1)[0]) if '.' in name else model
    if isinstance(module, torch.nn.LayerNorm):
        return 'layernorm'
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
        return 'batchnorm'
    if name.endswith('.attn.temperature'):
        return 'temperature'
    if re.search(r'\.gamma[123]$', name):
        return 'gamma'
    if name.startswith('backbone.pos_embed.'):
        return 'pos_embed'
    return 'other'


# name: (ours, the release's) weight decay, in units of the base weight decay
DET_REPRESENTATIVES = {
    'backbone.blocks.0.attn.temperature': (0, 1),
    'backbone.blocks.0.gamma1': (0, 1),
    'backbone.blocks.0.gamma3': (0, 1),
    'backbone.blocks.11.gamma2': (0, 1),
    'backbone.pos_embed.token_projection.weight': (0, 1),
    'backbone.pos_embed.token_projection.bias': (0, 1),
    'backbone.patch_embed.proj.0.1.weight': (0, 1),  # stem BatchNorm: no 'norm' in its name
    'backbone.patch_embed.proj.4.1.bias': (0, 1),
    'backbone.blocks.0.local_mp.bn.weight': (0, 1),  # LPI BatchNorm
    'backbone.blocks.0.local_mp.bn.bias': (0, 1),
    'backbone.blocks.0.norm1.weight': (0, 0),  # LayerNorms: the only ones the release exempts
    'backbone.blocks.0.norm1.bias': (0, 0),
    'backbone.blocks.0.norm3.weight': (0, 0),
    'backbone.blocks.5.norm2.bias': (0, 0),
    'backbone.blocks.0.attn.qkv.weight': (1, 1),
    'backbone.blocks.0.attn.qkv.bias': (1, 1),
    'backbone.blocks.0.attn.proj.weight': (1, 1),
    'backbone.blocks.0.local_mp.conv1.weight': (1, 1),  # depthwise: no rule on either side
    'backbone.blocks.0.mlp.fc1.bias': (1, 1),
    'backbone.pyramid.0.0.weight': (1, 1),  # the release's fpn1.0 (ConvTranspose2d)
    'neck.lateral_convs.0.conv.weight': (1, 1),
    'neck.fpn_convs.3.conv.bias': (1, 1),
    'rpn_head.rpn_conv.weight': (1, 1),
    'roi_head.bbox_head.fc_cls.weight': (1, 1),
    'roi_head.mask_head.convs.0.conv.weight': (1, 1),
}
SEG_REPRESENTATIVES = {
    'backbone.pyramid.0.1.weight': (0, 1),  # /16 pyramid BatchNorm, the release's fpn1.1
    'backbone.pyramid.0.1.bias': (0, 1),
    'backbone.patch_embed.proj.6.1.weight': (0, 1),
    'decode_head.scale_heads.0.0.bn.weight': (0, 1),  # the heads' SyncBN (ConvModule 'bn')
    'decode_head.scale_heads.3.2.bn.bias': (0, 1),
    'backbone.blocks.0.norm1.weight': (0, 0),
    'backbone.blocks.0.attn.temperature': (0, 1),
    'neck.lateral_convs.0.conv.weight': (1, 1),
    'decode_head.conv_seg.weight': (1, 1),
    'decode_head.conv_seg.bias': (1, 1),
}


@pytest.mark.parametrize('name, overrides, representatives', [
    ('mask_rcnn_xcit_small_12_p8_3x_coco',
     {'model.neck.in_channels': [128] * 4}, DET_REPRESENTATIVES),
    ('sem_fpn/sem_fpn_xcit_small_12_p16_80k_ade20k',
     {'model.neck.in_channels': [128] * 4, 'model.neck.out_channels': 128,
      'model.decode_head.in_channels': [128] * 4}, SEG_REPRESENTATIVES)])
def test_weight_decay_ours_and_the_releases(name, overrides, representatives):
    """The docs' statement of the difference (train_and_test.md), checked on real models (an
    XCiT-N12 backbone in the config's detector / segmentor): the release decayed everything but
    the LayerNorms; we also exempt the BatchNorms (stem, LPI, /16 pyramid, heads), the XCA
    temperatures, the LayerScale gammas and the positional encoding; all else decays in both."""
    model, ours, following = _build(name, **overrides)
    base = RELEASE[name]['optimizer']['weight_decay']
    release = {n: release_weight_decay(release_name(n), base) for n in ours}
    for n, (our_mult, release_mult) in representatives.items():
        assert (ours[n], release[n]) == (base * our_mult, base * release_mult), n

    kinds = {n: _kind(model, n) for n in ours}
    # The release's rule: exactly the LayerNorms (names with 'norm') are exempt.
    assert {n for n, wd in release.items() if wd == 0} == \
        {n for n, k in kinds.items() if k == 'layernorm'}
    assert all(wd == base for n, wd in release.items() if kinds[n] != 'layernorm')
    # Ours: every kind but 'other' is exempt, 'other' decays.
    assert {n for n, wd in ours.items() if wd == 0} == \
        {n for n, k in kinds.items() if k != 'other'}
    assert all(wd == base for n, wd in ours.items() if kinds[n] == 'other')
    # The difference: BatchNorms, temperatures, gammas and the positional encoding.
    differ = {kinds[n] for n in ours if ours[n] != release[n]}
    assert differ == {'batchnorm', 'temperature', 'gamma', 'pos_embed'}
    # The one-line override in the schedules' comments gives the release's rule exactly.
    assert following == release
