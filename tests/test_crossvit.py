"""The CrossViT backbone: equivalence with timm, shapes, checkpoints, registry, toy training."""
import copy
import math
import re

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from xcit_dense.checkpoint import convert_crossvit_state_dict, load_crossvit_checkpoint
from xcit_dense.models import CrossViT
from xcit_dense.models.crossvit import ARCH_ZOO

DET_CONFIG = 'configs/toy/mask-rcnn_crossvit-tiny_fpn-64_toy-shapes.py'
SEG_CONFIG = 'configs/toy/fpn_crossvit-tiny_toy-ade-128x128.py'


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Perturb every LayerNorm, bias, class token and position embedding, so equivalence
    cannot pass by symmetry of the default initialisation (LayerNorms 1/0, biases 0)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 or name.startswith(('cls_token', 'pos_embed')):
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize('arch', ['tiny', '9_dagger'])
def test_branches_match_timm_forward_intermediates(arch):
    """At timm's native 240 x 240, with timm's non-overlapping patches, both branches' maps
    are timm's. timm resizes the large-patch branch's input to 224; the dense backbone does
    not, so the reference is timm's model built without that resize (``img_scale=(1, 1)``,
    a 15 x 15 large-patch grid)."""
    ref = randomize(timm.create_model(f'crossvit_{arch}_240', img_scale=(1.0, 1.0))).eval()
    model = CrossViT(dict(ARCH_ZOO[arch], pos_grids=(20, 15)), patch_strides=(12, 16)).eval()
    result = model.load_state_dict(ref.state_dict(), strict=False)
    assert all(k.startswith('pyramid.') for k in result.missing_keys)
    last = len(ref.blocks) - 1  # its fusion only updates the class tokens: left out
    assert all(k.startswith(('norm.', 'head.', f'blocks.{last}.projs.', f'blocks.{last}.fusion.',
                             f'blocks.{last}.revert_projs.')) for k in result.unexpected_keys)
    x = torch.randn(2, 3, 240, 240)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=[last, 2 * last + 1],
                                             intermediates_only=True)
        actual = model.forward_branches(x)
    for e, a, width, grid in zip(expected, actual, model.embed_dim, (20, 15)):
        assert a.shape == e.shape == (2, width, grid, grid)
        assert (a - e).abs().max().item() <= 1e-5


@pytest.mark.parametrize('arch', ['tiny', '9_dagger'])
def test_default_stride_8_branches_match_a_reference_from_timm_modules(arch):
    """The default ``patch_strides=(8, 16)``, which no timm model has, against a reference
    assembled from a timm CrossVit's own modules with the same random weights: the image
    padded at the bottom and right to a multiple of 16; timm's 12-px patch embedding run at
    stride 8, padded by 2 so that each 12 x 12 patch is centred on its 8 x 8 cell (the
    multi-conv stem: its middle 3x3 conv at stride 2, padding 1), as ``PatchEmbed``
    documents; timm's 16-px embedding as it is; timm's class tokens, and its position
    embeddings resized to each grid as timm's ``resample_abs_pos_embed`` does (bicubic,
    antialiased, class token kept), here written out; then timm's three MultiScaleBlocks (the
    last one's fusion included: it only changes the class tokens) and the patch tokens as
    maps. Grids: shrunk (12 x 16 and 6 x 8 from 20 x 20 and 14 x 14), padded (100 x 75 to
    112 x 80), taller than the embeddings' (22 x 6 and 11 x 3)."""
    ref = randomize(timm.create_model(f'crossvit_{arch}_240')).eval()
    model = CrossViT(arch).eval()
    assert model.patch_strides == (8, 16)
    result = model.load_state_dict(ref.state_dict(), strict=False)
    assert all(k.startswith('pyramid.') for k in result.missing_keys)
    small = copy.deepcopy(ref.patch_embed[0].proj)
    conv = small if isinstance(small, torch.nn.Conv2d) else small[2]
    conv.stride, conv.padding = ((8, 8), (2, 2)) if conv is small else ((2, 2), (1, 1))
    for H, W in [(96, 128), (100, 75), (176, 48)]:
        x = torch.randn(2, 3, H, W)
        with torch.no_grad():
            padded = F.pad(x, (0, -W % 16, 0, -H % 16))
            maps = [small(padded), ref.patch_embed[1].proj(padded)]
            tokens = []
            for i, y in enumerate(maps):
                pos = getattr(ref, f'pos_embed_{i}')
                old = math.isqrt(pos.shape[1] - 1)
                grid = pos[:, 1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
                grid = F.interpolate(grid, size=y.shape[-2:], mode='bicubic', antialias=True)
                pos = torch.cat((pos[:, :1], grid.flatten(2).transpose(1, 2)), dim=1)
                cls = getattr(ref, f'cls_token_{i}').expand(len(x), -1, -1)
                tokens.append(torch.cat((cls, y.flatten(2).transpose(1, 2)), dim=1) + pos)
            for block in ref.blocks:
                tokens = block(tokens)
            expected = [t[:, 1:].transpose(1, 2).reshape(y.shape) for t, y in zip(tokens, maps)]
            actual = model.forward_branches(x)
        Hp, Wp = padded.shape[-2:]
        for e, a, stride, width in zip(expected, actual, (8, 16), model.embed_dim):
            assert a.shape == e.shape == (2, width, Hp // stride, Wp // stride)
            assert (a - e).abs().max().item() <= 1e-5, (H, W)


@pytest.mark.parametrize('strides,multiple', [((8, 16), 16), ((12, 16), 48)])
@pytest.mark.parametrize('H,W', [(240, 240), (100, 75), (64, 200)])
def test_output_shapes_and_strides(strides, multiple, H, W):
    model = CrossViT('tiny', patch_strides=strides).eval()
    assert model.out_strides == (4, 8, 16, 32)
    assert model.out_channels == (96, 96, 192, 192)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, H, W))
    Hp, Wp = math.ceil(H / multiple) * multiple, math.ceil(W / multiple) * multiple
    assert [tuple(o.shape) for o in outs] == [
        (1, c, math.ceil(Hp / s), math.ceil(Wp / s))
        for c, s in zip(model.out_channels, model.out_strides)]
    assert all(o.is_contiguous() for o in outs)


def test_pyramid_ops_and_norms():
    ops = [[type(m).__name__ for m in level] for level in CrossViT('tiny').pyramid]
    assert ops == [['ConvTranspose2d', 'BatchNorm2d'], ['BatchNorm2d'], ['BatchNorm2d'],
                   ['MaxPool2d', 'BatchNorm2d']]
    timm_patches = CrossViT('tiny', patch_strides=(12, 16),
                            norm_cfg=dict(type='GN', num_groups=8)).pyramid
    assert [[type(m).__name__ for m in level] for level in timm_patches] == [
        ['ConvTranspose2d', 'GroupNorm'], ['ConvTranspose2d', 'MaxPool2d', 'GroupNorm'],
        ['GroupNorm'], ['MaxPool2d', 'GroupNorm']]
    assert timm_patches[0][0].stride == (3, 3) and timm_patches[1][1].kernel_size == 2
    sync = CrossViT('tiny', norm_cfg=dict(type='SyncBN'))
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in sync.modules()) == 4


def gradient_free(model: CrossViT) -> set:
    """The parameters whose gradient is zero by construction (in training, BatchNorm pyramid):

    - the fusions' key biases (``attn.wk.bias``): a key bias adds the same q . b to all of a
      query's logits, which softmax ignores (the blocks' self-attention has its key bias in
      the fused qkv bias, whose query and value parts do get gradients);
    - biases that add a per-channel constant to all a training BatchNorm normalises, which it
      subtracts again: the pyramid's transposed convolutions', and the last block's MLP output
      bias of a branch whose levels only max-pool before their norm (the large-patch branch;
      the small one's reaches stride 4 through a transposed conv, which weighs it by the
      position in the kernel).
    """
    names = {n for n, _ in model.named_parameters()
             if re.fullmatch(r'blocks\.\d+\.fusion\.\d+\.attn\.wk\.bias', n)}
    levels = list(zip(model.pyramid, model.pyramid.sources))
    names |= {f'pyramid.{i}.0.bias' for i, (level, _) in enumerate(levels)
              if isinstance(level[0], torch.nn.ConvTranspose2d)}
    for b, branch in enumerate(model.blocks[-1].blocks):
        if not any(isinstance(m, torch.nn.ConvTranspose2d)
                   for level, source in levels if source == b for m in level):
            names.add(f'blocks.{len(model.blocks) - 1}.blocks.{b}.{len(branch) - 1}.mlp.fc2.bias')
    return names


@pytest.mark.parametrize('strides,frozen_stages', [((8, 16), -1), ((12, 16), -1), ((8, 16), 1)])
def test_every_trainable_parameter_gets_a_nonzero_gradient(strides, frozen_stages):
    """No parameter is unused (DDP would need find_unused_parameters), every trainable one
    gets a gradient that is not zero but for those that cannot have one
    (:func:`gradient_free`, exactly these), and frozen ones get none.

    The loss is a random projection of the outputs: ``sum(o.mean())`` would be the pyramid
    norms' biases alone whatever the trunk gives (a training BatchNorm's output has the mean
    of its bias), leaving the trunk with rounding noise, as small as 1e-20. In float64 that
    noise is below 1e-11; real gradients here are above 1e-3.
    """
    model = CrossViT('tiny', patch_strides=strides, frozen_stages=frozen_stages)
    model = model.double().train()
    outs = model(torch.randn(2, 3, 48, 80, dtype=torch.float64))
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    params = dict(model.named_parameters())
    frozen = [n for n, p in params.items() if not p.requires_grad]
    assert frozen == [n for n in params if frozen_stages == 1 and n.startswith(
        ('patch_embed.', 'pos_embed_', 'cls_token_', 'blocks.0.'))]
    assert [n for n in frozen if params[n].grad is not None] == []
    trainable = {n: p.grad for n, p in params.items() if p.requires_grad}
    assert [n for n, g in trainable.items() if g is None] == []
    assert {n for n, g in trainable.items() if g.norm() <= 1e-8} == gradient_free(model) - set(
        frozen)


def test_padding_only_adds_rows_and_columns():
    model = CrossViT('tiny').eval()
    x = torch.randn(1, 3, 64, 96)
    x[..., 60:, :] = 0
    x[..., :, 90:] = 0
    with torch.no_grad():
        full = model.forward_branches(x)
        padded = model.forward_branches(x[..., :60, :90])
    for a, b in zip(full, padded):
        assert torch.allclose(a, b, atol=1e-6)


def test_arch_names_and_errors():
    with pytest.raises(KeyError, match=r"Unknown CrossViT arch '18_daggr'; valid names are "
                                       r"\['15', '15_dagger', '15_dagger_408', '18', "
                                       r"'18_dagger', '18_dagger_408', '9', '9_dagger', "
                                       r"'base', 'small', 'tiny'\]"):
        CrossViT('18_daggr')
    assert CrossViT('crossvit_tiny_240').embed_dim == (96, 192)  # timm's model names
    with pytest.raises(KeyError, match=r"missing \['depth', 'mlp_ratio', 'num_heads'\]"):
        CrossViT(dict(embed_dim=(64, 128)))
    with pytest.raises(ValueError, match=r'patch_strides must be one of \(\(8, 16\), '
                                         r'\(12, 16\)\), got \(16, 16\)'):
        CrossViT('tiny', patch_strides=(16, 16))


def test_frozen_stages():
    model = CrossViT('tiny', frozen_stages=1)
    model.train()
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert not model.pos_embed_0.requires_grad and not model.cls_token_1.requires_grad
    assert not any(p.requires_grad for p in model.blocks[0].parameters())
    assert all(p.requires_grad for p in model.blocks[1].parameters())
    assert not model.blocks[0].training and model.blocks[1].training


@pytest.fixture(scope='module')
def timm_state():
    """A randomly initialised timm CrossViT-Ti (norms, biases and tokens perturbed)."""
    torch.manual_seed(0)
    return randomize(timm.create_model('crossvit_tiny_240')).state_dict()


@pytest.fixture(scope='module')
def reference(timm_state):
    """Backbone outputs with the timm weights loaded directly, pyramid weights fixed."""
    torch.manual_seed(1)
    model = CrossViT('tiny').eval()
    pyramid = {k: v.clone() for k, v in model.state_dict().items() if k.startswith('pyramid.')}
    model.load_state_dict({**timm_state, **pyramid}, strict=False)
    x = torch.randn(1, 3, 80, 112)
    with torch.no_grad():
        return x, pyramid, model(x)


def release_layout(timm_state):
    """The CrossViT release's names: parameter lists ``pos_embed.0``, ``cls_token.0``."""
    state = {k.replace('pos_embed_', 'pos_embed.').replace('cls_token_', 'cls_token.'): v
             for k, v in timm_state.items()}
    return {'model': state}


def dense_layout(timm_state, pyramid):
    """An mmdet checkpoint of the backbone: ``backbone.*`` beside the neck, wrapped."""
    state = {'backbone.' + k: v for k, v in timm_state.items()
             if not k.startswith(('norm.', 'head.'))}
    state.update({'backbone.' + k: v for k, v in pyramid.items()})
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 96, 1, 1)
    return {'state_dict': state, 'meta': {'epoch': 12}}


@pytest.mark.parametrize('fmt', ['timm.pth', 'timm.safetensors', 'crossvit.pth', 'dense.pth'])
def test_checkpoint_formats_match_direct_loading(fmt, timm_state, reference, tmp_path):
    x, pyramid, expected = reference
    path = str(tmp_path / fmt)
    if fmt == 'timm.safetensors':
        save_file(timm_state, path)
    else:
        builders = {'timm.pth': lambda s: s, 'crossvit.pth': release_layout,
                    'dense.pth': lambda s: dense_layout(s, pyramid)}
        torch.save(builders[fmt](timm_state), path)
    model = CrossViT('tiny').eval()  # a fresh pyramid: fixed below unless the file has one
    if fmt != 'dense.pth':
        model.load_state_dict(pyramid, strict=False)
    info = load_crossvit_checkpoint(model, path)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(x), expected))
    assert info['unexpected'] == []  # final norms, heads, last fusion: dropped, not reported
    assert sorted(info['missing']) == ([] if fmt == 'dense.pth' else sorted(
        k for k in pyramid if not k.endswith('num_batches_tracked')))


def test_detected_formats(timm_state):
    assert convert_crossvit_state_dict(timm_state)[1] == 'timm'
    assert convert_crossvit_state_dict(release_layout(timm_state))[1] == 'crossvit'
    pyramid = {k: v for k, v in CrossViT('tiny').state_dict().items() if k.startswith('pyramid.')}
    assert convert_crossvit_state_dict(dense_layout(timm_state, pyramid))[1] == 'crossvit-dense'


def test_init_cfg_pretrained_loads_in_init_weights(timm_state, reference, tmp_path):
    x, pyramid, expected = reference
    path = str(tmp_path / 'timm.pth')
    torch.save(timm_state, path)
    model = CrossViT('tiny', init_cfg=dict(type='Pretrained', checkpoint=path))
    model.load_state_dict(pyramid, strict=False)
    model.init_weights()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model.eval()(x), expected))


def test_checkpoint_without_crossvit_keys_is_an_error(tmp_path):
    path = str(tmp_path / 'xcit.pth')
    torch.save({'state_dict': {'blocks.0.attn.temperature': torch.ones(4, 1, 1),
                               'pos_embeder.token_projection.weight': torch.zeros(1)}}, path)
    with pytest.raises(RuntimeError, match=r'No key of checkpoint .*xcit\.pth matches the '
                                           r"CrossViT backbone.*'blocks.0.attn.temperature'.*"
                                           r'Supported formats: timm'):
        load_crossvit_checkpoint(CrossViT('tiny'), path)


def test_checkpoint_of_another_variant_lists_the_mismatches(tmp_path):
    path = str(tmp_path / 'crossvit_9.pth')
    torch.save(CrossViT('9').state_dict(), path)
    with pytest.raises(RuntimeError, match=r'does not fit this CrossViT architecture: it looks '
                                           r'like embed_dim=\(128, 256\), 3 multi-scale blocks '
                                           r'of \(1, 3\) blocks, mlp_ratio=\(3.0, 3.0\), linear '
                                           r'patch embedding, position grids \(20, 14\), the '
                                           r'model is embed_dim=\(96, 192\), 3 multi-scale '
                                           r'blocks of \(1, 4\) blocks, mlp_ratio=\(4.0, 4.0\).*'
                                           r'\n  pos_embed_0: checkpoint \(1, 401, 128\) vs '
                                           r'model \(1, 401, 96\)'):
        load_crossvit_checkpoint(CrossViT('tiny'), path)
    path = str(tmp_path / 'crossvit_tiny_408.pth')  # same widths, other position grids
    torch.save(CrossViT(dict(ARCH_ZOO['tiny'], pos_grids=(34, 24))).state_dict(), path)
    with pytest.raises(RuntimeError, match=r'position grids \(34, 24\), the model is .*'
                                           r'position grids \(20, 14\)\. 2 tensors'):
        load_crossvit_checkpoint(CrossViT('tiny'), path)


def test_checkpoint_with_another_patch_embedding_is_an_error(tmp_path):
    """``9`` and ``9_dagger`` share every other tensor: only the stem's keys tell them apart."""
    path = str(tmp_path / 'crossvit_9.pth')
    torch.save(CrossViT('9').state_dict(), path)
    model = CrossViT('9_dagger')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match=r'It has a linear patch embedding, the model a '
                                           r'multi-conv one\.(.|\n)*\nMissing keys \(12\): '
                                           r"\['patch_embed\.0\.proj\.0\.weight'"):
        load_crossvit_checkpoint(model, path)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_type_crossvit_resolves_under_each_default_scope(scope):
    import importlib

    from mmengine.registry import MODELS, DefaultScope

    import xcit_dense  # noqa: F401
    assert importlib.import_module(f'{scope}.registry').MODELS.get('CrossViT') is CrossViT
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(dict(type='CrossViT', arch='tiny', patch_strides=(12, 16)))
    assert isinstance(model, CrossViT) and model.patch_strides == (12, 16)


def test_toy_detection_learns_and_gives_coco_map(toy_cfg, toy_coco_root, tmp_path):
    """Two steps of the toy Mask R-CNN with CrossViT-Ti from random weights on the same 4
    images (warm-up off, the config's lr 1e-3 from the start): the second step's loss is
    clearly below the first's (measured: 4.87 to 3.69, 0.76x; the classification loss 1.49
    to 0.70, 0.47x), and CocoMetric evaluates the model's masks and boxes. (Its mAP is 0 after
    two steps, as a fresh model's is: no threshold on it would tell learning apart; the
    toy validation set has no large objects: the large-object mAPs are -1 exactly.)"""
    from mmengine.runner import Runner
    cfg = toy_cfg('det', toy_coco_root, tmp_path, 'crossvit_det', config=DET_CONFIG)
    cfg.train_dataloader.dataset.indices = 4  # one batch: each step on the same images
    cfg.train_cfg.max_epochs, cfg.train_cfg.val_begin = 2, 3  # validate once, below
    cfg.param_scheduler[0].start_factor = 1.0  # no warm-up
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # a barely trained model: keep every detection
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    losses = hub.get_scalar('train/loss').data[0]
    cls_losses = hub.get_scalar('train/loss_cls').data[0]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert losses[1] < 0.85 * losses[0], losses
    assert cls_losses[1] < 0.6 * cls_losses[0], cls_losses
    metrics = runner.val_loop.run()
    for kind in ('bbox', 'segm'):
        assert {f'coco/{kind}_mAP', f'coco/{kind}_mAP_50'} <= set(metrics)
        assert metrics[f'coco/{kind}_mAP_l'] == -1.0


def test_toy_segmentation_learns_and_beats_a_fresh_model(toy_cfg, toy_ade_root, tmp_path):
    """Two steps of the toy Semantic FPN with CrossViT-Ti from random weights (warm-up off:
    the config's lr 1e-3 from the start; each step on all 8 training images): the loss falls
    (measured: 1.33 to 1.19, 0.89x) and the model has learnt the toy data's class prior: its
    validation mIoU is that of labelling every pixel background (measured: 23.29, exactly
    that; a fresh model's: 8.74), computed here from the label maps."""
    from mmengine.runner import Runner

    from xcit_dense.testing.oracles import majority_miou
    cfg = toy_cfg('seg', toy_ade_root, tmp_path, 'crossvit_seg', config=SEG_CONFIG)
    cfg.train_cfg.max_iters, cfg.train_cfg.val_begin = 2, 3  # validate once, below
    cfg.param_scheduler[0].start_factor = 1.0  # no warm-up
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert losses[1] < 0.95 * losses[0], losses
    metrics = runner.val_loop.run()
    assert set(metrics) >= {'aAcc', 'mIoU', 'mAcc'}
    baseline = majority_miou(toy_ade_root, num_classes=4)
    assert baseline == pytest.approx(23.29, abs=0.01)
    assert metrics['mIoU'] > 0.9 * baseline, metrics


def test_out_strides_return_only_the_levels_asked_for(randomize):
    """Three levels for DETR-style / RTMDet necks: the full model's maps at strides 8, 16
    and 32, with the small branch's width at 8 and the large branch's at 16 and 32."""
    full = randomize(CrossViT('tiny')).eval()
    model = CrossViT('tiny', out_strides=(8, 16, 32)).eval()
    result = model.load_state_dict(full.state_dict(), strict=False)
    assert result.missing_keys == []
    assert {k.split('.')[1] for k in result.unexpected_keys} == {'0'}
    assert [name for name, _ in model.pyramid.named_children()] == ['1', '2', '3']
    assert model.out_channels == (96, 192, 192) and model.out_strides == (8, 16, 32)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected, actual = full(x), model(x)
    assert all(torch.equal(a, e) for a, e in zip(actual, expected[1:]))
    with pytest.raises(ValueError, match=r'out_strides must be ascending strides among '
                       r'\(4, 8, 16, 32\)'):
        CrossViT('tiny', out_strides=(8, 64))
