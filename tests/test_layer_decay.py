"""Layer-wise learning-rate decay (LayerDecayOptimWrapperConstructor): the learning rate and
weight decay of every parameter of the ``_lrd`` configs' models (with an XCiT-N12 backbone) and
of a CrossViT model, against lr = base_lr * decay_rate ** (num_layers + 1 - layer) (num_layers:
the backbone's blocks, as mmseg and ViTDet count them) and the no-weight-decay rules, both
restated here from the parameter names; the same learning rates as mmseg's
LearningRateDecayOptimizerConstructor; the former num_layers (blocks + 1), accepted with a
warning; the errors for a ``num_layers`` or ``decay_rate`` that does not fit; the printed
table of groups."""
import copy
import importlib.util
import os
import re

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

import xcit_dense  # noqa: F401
from xcit_dense.engine import build_model, config_scope, fall_back_from_sync_bn
from xcit_dense.engine.optim import format_param_groups
from xcit_dense.models import XCiT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET_LRD = 'configs/mask_rcnn/mask-rcnn_xcit-s12-p8_fpn_lrd-ms-crop-3x_coco.py'
SEG_LRD = 'configs/upernet/upernet_xcit-s12-p8_8xb2-lrd-160k_ade20k-512x512.py'
CROSSVIT_TOY = 'configs/toy/mask-rcnn_crossvit-tiny_fpn-64_toy-shapes.py'
NARROW = {  # XCiT-N12 (width 128) in place of S12 (384)
    DET_LRD: {'model.neck.in_channels': [128] * 4},
    SEG_LRD: {'model.decode_head.in_channels': [128] * 4,
              'model.auxiliary_head.in_channels': 128},
}
LRD = dict(constructor='LayerDecayOptimWrapperConstructor')


def _load(path):
    return Config.fromfile(os.path.join(ROOT, path))


def _build(path, arch='nano_12', overrides=None):
    cfg = _load(path)
    if arch:
        cfg.model.backbone.arch = arch
    cfg.model.backbone.init_cfg = None
    cfg.merge_from_dict(overrides or {})
    fall_back_from_sync_bn(cfg)
    return cfg, build_model(cfg)


@pytest.fixture(scope='module')
def models():
    return {DET_LRD: _build(DET_LRD, overrides=NARROW[DET_LRD]),
            SEG_LRD: _build(SEG_LRD, overrides=NARROW[SEG_LRD]),
            CROSSVIT_TOY: _build(CROSSVIT_TOY, arch=None)}


def _groups(model, optim_wrapper_cfg, scope):
    """{parameter name: (lr, weight decay)} of the optimizer the config builds."""
    with DefaultScope.overwrite_default_scope(scope):
        wrapper = build_optim_wrapper(model, optim_wrapper_cfg)
    by_id = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            assert id(p) not in by_id
            by_id[id(p)] = (group['lr'], group['weight_decay'])
    return {n: by_id[id(p)] for n, p in model.named_parameters()}


# The layers, restated from the names (the constructor keys on the same prefixes).
LAYER_0 = {'patch_embed', 'pos_embed', 'pos_embed_0', 'pos_embed_1', 'cls_token_0',
           'cls_token_1'}
TOP = {'pyramid'}  # the backbone's other top-level parts: at the top with the neck and heads


def expected_layer(name, num_layers):
    parts = name.split('.')
    if parts[0] != 'backbone':
        return num_layers + 1
    if parts[1] == 'blocks':
        return int(parts[2]) + 1
    assert parts[1] in LAYER_0 | TOP, f'{name}: a backbone part this test does not know'
    return 0 if parts[1] in LAYER_0 else num_layers + 1


# No weight decay: norm layers (norm_decay_mult=0.) and, restated from the backbones'
# no_weight_decay(), XCiT's positional encoding, XCA temperatures and LayerScale gammas, and
# CrossViT's position embeddings and class tokens.
NO_DECAY = re.compile(r'backbone\.(pos_embed\..+|pos_embed_\d|cls_token_\d'
                      r'|blocks\.\d+\.(attn\.temperature|gamma[123]))')
NORMS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def expected_weight_decay(model, name, base_wd):
    module = model.get_submodule(name.rsplit('.', 1)[0])
    return 0. if isinstance(module, NORMS) or NO_DECAY.fullmatch(name) else base_wd


def check_every_parameter(model, groups, base_lr, base_wd, decay_rate, num_layers):
    layers = set()
    for name, param in model.named_parameters():
        assert param.requires_grad, name
        layer = expected_layer(name, num_layers)
        layers.add(layer)
        lr = base_lr * decay_rate ** (num_layers + 1 - layer)
        assert groups[name][0] == pytest.approx(lr, rel=1e-12, abs=0), name
        assert groups[name][1] == expected_weight_decay(model, name, base_wd), name
    assert layers == set(range(num_layers + 2))  # every layer has parameters


@pytest.mark.parametrize('path, decay_rate', [(DET_LRD, 0.7), (SEG_LRD, 0.65)])
def test_lrd_configs(models, path, decay_rate):
    cfg, model = models[path]
    # the leaf's optimizer and weight-decay rules, with the constructor and decay added
    leaf = _load(path.replace('lrd-', ''))
    assert cfg.optim_wrapper.constructor == 'LayerDecayOptimWrapperConstructor'
    assert cfg.optim_wrapper.paramwise_cfg == dict(
        leaf.optim_wrapper.paramwise_cfg, decay_rate=decay_rate, num_layers=12)
    assert cfg.optim_wrapper.optimizer == leaf.optim_wrapper.optimizer
    assert len(model.backbone.blocks) == 12
    groups = _groups(model, cfg.optim_wrapper, config_scope(cfg))
    opt = cfg.optim_wrapper.optimizer
    check_every_parameter(model, groups, opt.lr, opt.weight_decay, decay_rate, 12)
    # spot checks of the formula's ends: the stem at decay_rate ** 13, block 11 at decay_rate
    assert groups['backbone.patch_embed.proj.0.0.weight'][0] == pytest.approx(
        opt.lr * decay_rate ** 13)
    assert groups['backbone.blocks.11.attn.qkv.weight'] == pytest.approx(
        (opt.lr * decay_rate, opt.weight_decay))
    assert groups['backbone.blocks.11.gamma1'] == pytest.approx((opt.lr * decay_rate, 0.))
    head = 'neck.lateral_convs.0.conv' if path == DET_LRD else 'decode_head.conv_seg'
    assert groups[f'{head}.weight'] == (opt.lr, opt.weight_decay)


def test_crossvit(models):
    cfg, model = models[CROSSVIT_TOY]
    assert len(model.backbone.blocks) == 3
    optim_wrapper = copy.deepcopy(cfg.optim_wrapper)
    optim_wrapper.update(LRD)
    optim_wrapper.paramwise_cfg.update(decay_rate=0.5, num_layers=3)
    groups = _groups(model, optim_wrapper, 'mmdet')
    opt = optim_wrapper.optimizer
    check_every_parameter(model, groups, opt.lr, opt.weight_decay, 0.5, 3)
    assert groups['backbone.cls_token_1'] == (opt.lr / 16, 0.)
    assert groups['backbone.blocks.2.blocks.0.0.attn.qkv.weight'] == (opt.lr / 2, 0.05)


def test_lr_mult_and_decay_rate_one(models):
    """mmengine's own lr multipliers (here a custom key's) multiply the layer's; with
    decay_rate 1 the layer-wise rule changes nothing."""
    cfg, model = models[DET_LRD]
    optim_wrapper = copy.deepcopy(cfg.optim_wrapper)
    optim_wrapper.paramwise_cfg.update(custom_keys={'blocks.3.': dict(lr_mult=0.1)})
    groups = _groups(model, optim_wrapper, 'mmdet')
    opt = optim_wrapper.optimizer
    for name, (lr, wd) in groups.items():
        layer, custom = expected_layer(name, 12), 'blocks.3.' in name
        assert lr == pytest.approx(opt.lr * (0.1 if custom else 1.) * 0.7 ** (13 - layer),
                                   rel=1e-12, abs=0), name
        # a custom key overrides norm_decay_mult (mmengine), not the backbone's no-decay list
        expected_wd = (0. if NO_DECAY.fullmatch(name) else opt.weight_decay) if custom else \
            expected_weight_decay(model, name, opt.weight_decay)
        assert wd == expected_wd, name
    optim_wrapper = copy.deepcopy(cfg.optim_wrapper)
    optim_wrapper.paramwise_cfg.decay_rate = 1
    groups = _groups(model, optim_wrapper, 'mmdet')
    check_every_parameter(model, groups, opt.lr, opt.weight_decay, 1., 12)
    assert {lr for lr, _ in groups.values()} == {opt.lr}


class _Truncated(nn.Module):
    """An XCiT whose out_indices end at block 5: it builds 6 blocks."""

    def __init__(self):
        super().__init__()
        self.backbone = XCiT(arch='nano_12', out_indices=(1, 2, 3, 5), init_cfg=None)
        self.head = nn.Linear(128, 2)


def test_num_layers_counts_the_blocks_the_backbone_has():
    model = _Truncated()
    assert len(model.backbone.blocks) == 6
    optim_wrapper = dict(LRD, optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                         paramwise_cfg=dict(norm_decay_mult=0., decay_rate=0.8, num_layers=6))
    groups = _groups(model, optim_wrapper, 'mmdet')
    check_every_parameter(model, groups, 1e-3, 0.05, 0.8, 6)
    assert groups['head.weight'] == (1e-3, 0.05)


def _error(model, scope, **paramwise):
    optim_wrapper = dict(LRD, optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
                         paramwise_cfg=dict(norm_decay_mult=0., **paramwise))
    with pytest.raises((ValueError, TypeError)) as info:
        _groups(model, optim_wrapper, scope)
    return str(info.value)


LAYERS_12 = ('paramwise_cfg.num_layers must be 12 for this XCiT (its number of blocks: layer 0 '
             'is the patch embedding, block i is layer i + 1, the pyramid, neck and heads are '
             'layer 13), got ')


@pytest.mark.parametrize('paramwise, message', [
    (dict(decay_rate=0.7, num_layers=11), LAYERS_12 + '11'),
    (dict(decay_rate=0.7, num_layers=25), LAYERS_12 + '25'),
    (dict(decay_rate=0.7), LAYERS_12 + 'None'),
    (dict(decay_rate=0.7, num_layers=12.), LAYERS_12 + '12.0'),
    (dict(decay_rate=0.7, num_layers=13.), LAYERS_12 + '13.0'),
    (dict(decay_rate=0.7, num_layers=True), LAYERS_12 + 'True'),
    (dict(num_layers=12), 'paramwise_cfg.decay_rate must be a number in (0, 1], got None'),
    (dict(decay_rate=0, num_layers=12),
     'paramwise_cfg.decay_rate must be a number in (0, 1], got 0'),
    (dict(decay_rate=1.5, num_layers=12),
     'paramwise_cfg.decay_rate must be a number in (0, 1], got 1.5'),
    (dict(decay_rate='0.7', num_layers=12),
     "paramwise_cfg.decay_rate must be a number in (0, 1], got '0.7'"),
    (dict(decay_rate=0.7, num_layers=12, decay_type='stage_wise'),
     "paramwise_cfg.decay_type must be 'layer_wise', got 'stage_wise'"),
])
def test_errors(models, paramwise, message):
    assert _error(models[SEG_LRD][1], 'mmseg', **paramwise) == message


def test_errors_name_the_backbone(models):
    crossvit = models[CROSSVIT_TOY][1]
    assert _error(crossvit, 'mmdet', decay_rate=0.7, num_layers=12) == (
        'paramwise_cfg.num_layers must be 3 for this CrossViT (its number of blocks: layer 0 is '
        'the patch embedding, block i is layer i + 1, the pyramid, neck and heads are layer 4), '
        'got 12')
    assert _error(nn.Sequential(nn.Linear(2, 2)), 'mmdet', decay_rate=0.7, num_layers=1) == (
        'LayerDecayOptimWrapperConstructor needs a backbone with blocks (XCiT, CrossViT), '
        'got NoneType')


@pytest.mark.parametrize('path', [DET_LRD, SEG_LRD, CROSSVIT_TOY])
def test_former_num_layers_warns_and_gives_the_same_learning_rates(models, path):
    """The blocks + 1 (13 for 12 blocks: what this constructor asked for before) is read as
    the blocks, with a DeprecationWarning saying what to write; the learning rates are those
    it gave before: base_lr * decay_rate ** (former num_layers - layer), the top layer being
    the former num_layers."""
    cfg, model = models[path]
    blocks = len(model.backbone.blocks)
    optim_wrapper = copy.deepcopy(cfg.optim_wrapper)
    optim_wrapper.update(LRD)
    optim_wrapper.paramwise_cfg.update(decay_rate=0.7, num_layers=blocks + 1)
    with pytest.warns(DeprecationWarning, match=re.escape(
            f'paramwise_cfg.num_layers={blocks + 1} counts the '
            f"{type(model.backbone).__name__}'s {blocks} blocks + 1, which "
            f'LayerDecayOptimWrapperConstructor no longer asks for: write '
            f'num_layers={blocks} (the blocks, as mmseg and ViTDet count them); the learning '
            'rates are the same.')):
        former = _groups(model, optim_wrapper, config_scope(cfg))
    base_lr = optim_wrapper.optimizer.lr
    for name, (lr, _) in former.items():
        parts = name.split('.')
        former_layer = (int(parts[2]) + 1 if parts[:2] == ['backbone', 'blocks'] else
                        0 if parts[0] == 'backbone' and parts[1] in LAYER_0 else blocks + 1)
        assert lr == pytest.approx(base_lr * 0.7 ** (blocks + 1 - former_layer), rel=1e-12,
                                   abs=0), name
    optim_wrapper.paramwise_cfg.num_layers = blocks
    assert _groups(model, optim_wrapper, config_scope(cfg)) == former


def _as_mmseg_vit_name(name):
    """An XCiT parameter's name as mmseg's ViT rule (``get_layer_id_for_vit``) reads names:
    its blocks are ``backbone.layers.i``, its positional encoding the parameter
    ``backbone.pos_embed`` (XCiT's is a module of several)."""
    if name.startswith('backbone.pos_embed.'):
        return 'backbone.pos_embed'
    return name.replace('backbone.blocks.', 'backbone.layers.', 1)


@pytest.mark.parametrize('path', [DET_LRD, SEG_LRD])
def test_same_learning_rates_as_mmsegs_constructor(models, path, monkeypatch):
    """The configs' num_layers=12 gives every parameter the learning rate that mmseg's
    LearningRateDecayOptimizerConstructor gives it with num_layers=12 on the same model. mmseg's
    constructor serves its BEiT and MAE backbones only (by class name), whose parameters are
    named as ViT's: the XCiT is presented under such a class name, and its parameter names
    translated (:func:`_as_mmseg_vit_name`) for mmseg's own layer rule."""
    from mmseg.engine.optimizers import layer_decay_optimizer_constructor as mmseg_lrd
    cfg, model = models[path]
    decay_rate = cfg.optim_wrapper.paramwise_cfg.decay_rate
    assert cfg.optim_wrapper.paramwise_cfg.num_layers == 12 == len(model.backbone.blocks)
    ours = _groups(model, cfg.optim_wrapper, config_scope(cfg))

    vit_layer_id = mmseg_lrd.get_layer_id_for_vit
    monkeypatch.setattr(mmseg_lrd, 'get_layer_id_for_vit',
                        lambda name, max_layer_id: vit_layer_id(_as_mmseg_vit_name(name),
                                                                max_layer_id))
    monkeypatch.setattr(model.backbone, '__class__', type('MAEXCiT', (XCiT,), {}))
    constructor = mmseg_lrd.LearningRateDecayOptimizerConstructor(
        dict(type='OptimWrapper', optimizer=dict(cfg.optim_wrapper.optimizer)),
        dict(num_layers=12, decay_rate=decay_rate, decay_type='layer_wise'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        optimizer = constructor(model).optimizer
    mmseg = {id(p): group['lr'] for group in optimizer.param_groups for p in group['params']}
    names = dict(model.named_parameters())
    assert set(mmseg) == {id(p) for p in names.values()}
    for name, param in names.items():
        assert ours[name][0] == pytest.approx(mmseg[id(param)], rel=1e-12, abs=0), name
    # every layer, 0 (decay_rate ** 13) to 13 (base_lr), is compared
    assert {expected_layer(name, 12) for name in names} == set(range(14))


def test_print_param_groups(models, capsys):
    spec = importlib.util.spec_from_file_location(
        'print_param_groups', os.path.join(ROOT, 'tools/analysis_tools/print_param_groups.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg, model = models[DET_LRD]
    with DefaultScope.overwrite_default_scope('mmdet'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    table = format_param_groups(model, wrapper.optimizer).splitlines()
    # the command prints the same table for the config (narrowed to N12 by --cfg-options)
    tool.main([DET_LRD, '--cfg-options', 'model.backbone.arch=nano_12',
                        'model.neck.in_channels=[128,128,128,128]'])
    assert capsys.readouterr().out.splitlines() == table
    n = sum(1 for _ in model.parameters())
    assert table[0] == f'base lr 0.0001, weight decay 0.05; {n} parameters in {n} groups'
    assert table[1].split() == ['lr', 'lr/base', 'wd', 'params', 'part']
    assert ' 9.6889e-07   0.0097    0.05      3  backbone.patch_embed' in table
    assert ' 7.0000e-05   0.7000       0     12  backbone.blocks.11' in table
    assert ' 1.0000e-04   1.0000    0.05     16  neck' in table
    rows = format_param_groups(model, wrapper.optimizer, per_parameter=True).splitlines()
    assert len(rows) == 2 + n
    assert rows[2].endswith('backbone.patch_embed.proj.0.0.weight')
