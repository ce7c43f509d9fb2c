"""The XCiT backbone: equivalence with timm, presets, shapes, options."""
import math

import pytest
import timm
import torch

from xcit_dense.models import XCiT
from xcit_dense.models.xcit import ARCH_ZOO, DEFAULT_OUT_INDICES, ConvPatchEmbed, XCABlock


def stream_in_small_chunks(monkeypatch) -> dict:
    """Make CPU inference stream test-sized inputs in many small chunks and bands (ragged
    last ones included); returns counters of the streamed calls."""
    monkeypatch.setattr(XCABlock, 'STREAM_TOKENS', 40)
    monkeypatch.setattr(XCABlock, 'BAND_TOKENS', 50)
    monkeypatch.setattr(ConvPatchEmbed, 'BAND_TOKENS', 30)
    calls = dict(blocks=0, stem=0)
    for cls, key in ((XCABlock, 'blocks'), (ConvPatchEmbed, 'stem')):
        streamed = cls.forward_streamed

        def counted(self, *args, _streamed=streamed, _key=key):
            calls[_key] += 1
            return _streamed(self, *args)
        monkeypatch.setattr(cls, 'forward_streamed', counted)
    return calls


@pytest.mark.parametrize('arch,patch_size,streamed', [
    ('small_12', 8, False), ('small_12', 16, False), ('tiny_24', 16, False),
    ('small_12', 8, True), ('tiny_24', 16, True)])
def test_blocks_match_timm_forward_intermediates(arch, patch_size, streamed, randomize,
                                                 monkeypatch):
    calls = stream_in_small_chunks(monkeypatch) if streamed else None
    ref = randomize(timm.create_model(f'xcit_{arch}_p{patch_size}_224')).eval()
    model = XCiT(arch, patch_size=patch_size).eval()
    result = model.load_state_dict(ref.state_dict(), strict=False)
    assert all(k.startswith('pyramid.') for k in result.missing_keys)
    x = torch.randn(2, 3, 12 * patch_size, 16 * patch_size)  # non-square
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=list(model.out_indices),
                                             intermediates_only=True)
        actual = model.forward_blocks(x)
    if streamed:
        assert calls == dict(blocks=model.out_indices[-1] + 1, stem=1)
    assert len(actual) == 4
    for e, a in zip(expected, actual):
        assert a.shape == e.shape == (2, model.embed_dim, 12, 16)
        assert (a - e).abs().max().item() <= 1e-5


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.float() - expected).norm() / expected.norm())


@pytest.mark.parametrize('patch_size,streamed', [(8, False), (16, False), (8, True)])
def test_bf16_autocast_is_as_close_to_fp32_as_timms(patch_size, streamed, randomize,
                                                    monkeypatch):
    """Under autocast the residual stream stays fp32, as in timm: a stream rounded to bf16 in
    every block had twice timm's error (1.08% against 0.54% at the last block of S12/16)."""
    calls = stream_in_small_chunks(monkeypatch) if streamed else None
    ref = randomize(timm.create_model(f'xcit_small_12_p{patch_size}_224')).eval()
    model = XCiT('small_12', patch_size=patch_size).eval()
    model.load_state_dict(ref.state_dict(), strict=False)
    x = torch.randn(1, 3, 16 * patch_size, 16 * patch_size)
    indices = list(model.out_indices)
    with torch.no_grad():
        ref_fp32 = ref.forward_intermediates(x, indices=indices, intermediates_only=True)
        ours_fp32 = model.forward_blocks(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            ref_bf16 = ref.forward_intermediates(x, indices=indices, intermediates_only=True)
            ours_bf16 = model.forward_blocks(x)
    if streamed:
        assert calls['blocks'] == 24  # the fp32 and the bf16 forwards
    for level in range(4):
        ours = relative_error(ours_bf16[level], ours_fp32[level])
        timms = relative_error(ref_bf16[level], ref_fp32[level])
        assert 0 < ours <= 1.05 * timms, (level, ours, timms)


@pytest.mark.parametrize('patch_size', [8, 16])
def test_streamed_inference_equals_the_unchunked_forward(patch_size, randomize, monkeypatch):
    model = randomize(XCiT('tiny_12', patch_size=patch_size)).eval()
    x = torch.randn(2, 3, 13 * patch_size + 3, 11 * patch_size)  # padded, odd grid
    with torch.no_grad():
        whole = model(x)  # 14 x 11 tokens: fewer than one default chunk, so not streamed
    calls = stream_in_small_chunks(monkeypatch)
    with torch.no_grad():
        streamed = model(x)
    assert calls == dict(blocks=12, stem=1)
    for a, b in zip(whole, streamed):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= 1e-5 * b.abs().max().item()


def test_no_streaming_for_batch_statistics_or_graph_capture(monkeypatch):
    """BatchNorm without running statistics normalises with the batch's statistics even in
    eval mode: streamed chunks would each get their own. And traced, exported or compiled
    forwards would unroll the streamed loops."""
    from unittest import mock

    from xcit_dense.models.xcit import can_stream
    calls = stream_in_small_chunks(monkeypatch)
    torch.manual_seed(0)
    model = XCiT('nano_12', patch_size=8,
                 norm_cfg=dict(type='BN', track_running_stats=False)).eval()
    x = torch.randn(1, 3, 96, 96) * 3
    with torch.no_grad():
        inference = model(x)
    reference = model(x)  # with autograd: the plain forward
    assert calls == dict(blocks=0, stem=0)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(inference, reference))
    block, tokens = XCiT('nano_12').eval().blocks[0], torch.randn(1, 2048, 128)
    with torch.no_grad():
        assert can_stream(block, tokens)
        for check in ('torch.jit.is_tracing', 'torch.compiler.is_compiling',
                      'torch.onnx.is_in_onnx_export'):
            with mock.patch(check, return_value=True):
                assert not can_stream(block, tokens), check


def test_streaming_only_in_cpu_inference_with_batch_norms(monkeypatch):
    calls = stream_in_small_chunks(monkeypatch)
    x = torch.randn(1, 3, 96, 96)
    gn_model = XCiT('nano_12', patch_size=8, norm_cfg=dict(type='GN', num_groups=8)).eval()
    model = XCiT('nano_12', patch_size=8)
    with torch.no_grad():
        gn_model(x)  # GroupNorm needs whole-map statistics
        model.train()(x)  # so does BatchNorm in training mode
    model.eval()(x)  # autograd needs the whole intermediates
    assert calls == dict(blocks=0, stem=0)
    with torch.no_grad():
        model(x)
    assert calls == dict(blocks=12, stem=1)


@pytest.mark.parametrize('arch,patch_size', [('nano_12', 8), ('nano_12', 16),
                                             ('tiny_24', 8), ('tiny_24', 16)])
def test_output_shapes_and_strides_on_undivisible_sizes(arch, patch_size):
    model = XCiT(arch, patch_size=patch_size).eval()
    assert model.out_indices == DEFAULT_OUT_INDICES[ARCH_ZOO[arch]['depth']]
    assert model.out_strides == (4, 8, 16, 32)
    assert model.out_channels == (ARCH_ZOO[arch]['embed_dim'],) * 4
    H, W = 3 * patch_size + 5, 2 * patch_size + 1
    with torch.no_grad():
        outs = model(torch.randn(1, 3, H, W))
    Hp, Wp = 4 * patch_size, 3 * patch_size  # padded to the next multiple of the patch size
    assert [tuple(o.shape) for o in outs] == [
        (1, c, math.ceil(Hp / s), math.ceil(Wp / s))
        for c, s in zip(model.out_channels, model.out_strides)]
    assert all(o.is_contiguous() for o in outs)


def test_padding_only_adds_rows_and_columns():
    """An image that is a multiple of the patch size gives the same top-left features as
    the same image cropped by a few pixels (which the backbone pads back)."""
    model = XCiT('nano_12', patch_size=16).eval()
    x = torch.randn(1, 3, 64, 96)
    x_cropped = x.clone()
    x_cropped[..., 60:, :] = 0
    x_cropped[..., :, 90:] = 0
    with torch.no_grad():
        full = model.forward_blocks(x_cropped)
        padded = model.forward_blocks(x_cropped[..., :60, :90])
    for a, b in zip(full, padded):
        assert torch.allclose(a, b, atol=1e-6)


def test_pyramid_ops_match_the_release():
    p8 = XCiT('nano_12', patch_size=8).pyramid
    assert [type(m).__name__ for m in p8] == ['Sequential', 'Identity', 'Sequential', 'Sequential']
    assert isinstance(p8[0][0], torch.nn.ConvTranspose2d)
    assert p8[2][0].kernel_size == 2 and p8[3][0].kernel_size == 4
    p16 = XCiT('nano_12', patch_size=16, norm_cfg=dict(type='GN', num_groups=8)).pyramid
    assert [type(m).__name__ for m in p16[0]] == [
        'ConvTranspose2d', 'GroupNorm', 'GELU', 'ConvTranspose2d']
    assert isinstance(p16[1][0], torch.nn.ConvTranspose2d)
    assert isinstance(p16[2], torch.nn.Identity) and p16[3][0].kernel_size == 2


def test_norm_cfg_reaches_every_batch_norm():
    model = XCiT('nano_12', patch_size=16, norm_cfg=dict(type='SyncBN'))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
    # stem (4) + one per block (12) + pyramid (1)
    assert len(norms) == 4 + 12 + 1


def test_unknown_arch_lists_valid_names():
    with pytest.raises(KeyError, match=r"Unknown XCiT arch 'small_13'.*'large_24'.*'small_12'"):
        XCiT('small_13')


def test_custom_arch_dict():
    model = XCiT(dict(embed_dim=64, depth=6, num_heads=2), out_indices=(1, 2, 3, 5))
    assert model.embed_dim == 64 and len(model.blocks) == 6
    assert model.arch['eta'] == 1.0 and model.blocks[0].gamma1[0].item() == 1.0
    # the form docs/backbones.md gives, with eta
    model = XCiT(arch=dict(embed_dim=64, depth=12, num_heads=2, eta=1e-5))
    assert model.arch['eta'] == 1e-5 and model.blocks[0].gamma1[0].item() == pytest.approx(1e-5)
    with pytest.raises(KeyError, match='missing'):
        XCiT(dict(embed_dim=64))


@pytest.mark.parametrize('out_indices', [(0, 1, 2), (3, 5, 7, 12), (5, 3, 7, 11), (-1, 3, 5, 7)])
def test_invalid_out_indices(out_indices):
    with pytest.raises(ValueError, match='out_indices must be 4 ascending block indices'):
        XCiT('nano_12', out_indices=out_indices)


def test_invalid_patch_size():
    with pytest.raises(ValueError, match=r'patch_size must be one of \(8, 16\), got 14'):
        XCiT('nano_12', patch_size=14)


def test_drop_path_schedules():
    const = XCiT('nano_12', drop_path_rate=0.1)
    assert [b.drop_path for b in const.blocks] == pytest.approx([0.1] * 12)
    linear = XCiT('nano_12', drop_path_rate=0.1, drop_path_schedule='linear')
    assert linear.blocks[0].drop_path == 0.
    assert linear.blocks[-1].drop_path == pytest.approx(0.1)
    assert linear.blocks[6].drop_path == pytest.approx(0.1 * 6 / 11)


def test_drop_path_drops_whole_samples_and_keeps_the_expectation():
    from xcit_dense.models.xcit import XCABlock
    block = XCABlock(16, num_heads=2, drop_path=0.5)
    x = torch.randn(4000, 4, 16)
    branch = torch.ones(4000, 4, 16)
    gamma = torch.full((16,), 2.)
    block.train()
    out = block._residual(x, branch, gamma) - x
    per_sample = out[:, 0, 0]
    zero, four = per_sample.abs() < 1e-5, (per_sample - 4.).abs() < 1e-5
    assert (zero | four).all() and zero.any()  # dropped, or kept as 2 * 2 / keep(0.5)
    assert torch.allclose(out, per_sample[:, None, None].expand_as(out), atol=1e-5)
    assert per_sample.mean().item() == pytest.approx(2., rel=0.1)  # unbiased
    block.eval()
    assert torch.equal(block._residual(x, branch, gamma), x + 2.)


def test_frozen_stages_freeze_embedding_and_first_blocks(randomize):
    """After an optimizer step in training mode, no frozen parameter or BatchNorm statistic
    has changed, and every trainable one has."""
    torch.manual_seed(0)  # drop-path masks that keep every branch of some sample
    model = randomize(XCiT('nano_12', patch_size=16, frozen_stages=2, drop_path_rate=0.1))
    model.train()
    frozen = [model.patch_embed, model.pos_embed, model.blocks[0], model.blocks[1]]
    assert not model.patch_embed.training and not model.blocks[1].local_mp.bn.training
    assert model.blocks[2].training
    frozen_names = {f'{prefix}.{k}' for prefix, m in zip(
        ('patch_embed', 'pos_embed', 'blocks.0', 'blocks.1'), frozen) for k in m.state_dict()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    weights = [torch.randn(o.shape[1:]) for o in model(torch.randn(4, 3, 64, 64))]
    outs = model(torch.randn(4, 3, 64, 64))
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    optimizer.step()
    after = model.state_dict()
    params = dict(model.named_parameters())
    for key, value in after.items():
        if key.endswith('num_batches_tracked') or key not in params and 'running' not in key:
            continue
        changed = not torch.equal(value, before[key])
        if key in frozen_names:
            assert not changed and (key not in params or not params[key].requires_grad), key
        else:
            assert changed, key


@pytest.mark.parametrize('frozen_stages', [-1, 0, 3])
def test_gradient_checkpointing_gives_the_same_gradients(frozen_stages, monkeypatch, randomize):
    """Every trainable block is checkpointed (the first after frozen ones too), and the
    gradients of every parameter equal the plain forward's, drop path included."""
    import torch.utils.checkpoint as cp
    torch.manual_seed(0)
    plain = randomize(XCiT('nano_12', patch_size=16, drop_path_rate=0.2,
                           frozen_stages=frozen_stages))
    ckpt = XCiT('nano_12', patch_size=16, drop_path_rate=0.2, frozen_stages=frozen_stages,
                with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    calls = []
    checkpoint = cp.checkpoint
    monkeypatch.setattr(cp, 'checkpoint', lambda fn, *a, **k: calls.append(fn) or checkpoint(
        fn, *a, **k))
    x = torch.randn(8, 3, 64, 64)  # 8 samples: no residual branch is dropped for all
    grads = []
    for model in (plain, ckpt):
        model.train()
        torch.manual_seed(1)  # the same drop-path masks
        sum(o.square().sum() for o in model(x)).backward()
        grads.append({k: p.grad for k, p in model.named_parameters() if p.requires_grad})
    assert calls == list(ckpt.blocks[max(frozen_stages, 0):])
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for key, grad in grads[0].items():
        assert grad is not None and grad.abs().max() > 0, key
        assert torch.allclose(grad, grads[1][key], rtol=1e-4, atol=1e-6), key


def test_rejects_non_image_input():
    with pytest.raises(ValueError, match=r'expects a \(B, C, H, W\) image batch'):
        XCiT('nano_12')(torch.randn(3, 32, 32))


@pytest.mark.parametrize('patch_size,out_strides,out_indices,blocks', [
    (8, (8, 16, 32), (5, 7, 11), 12),  # DETR-style / RTMDet necks
    (16, (16,), (7,), 8),  # one map, the release's block for stride 16: later blocks dropped
    (16, (4, 32), (3, 11), 12)])
def test_out_strides_return_only_the_levels_asked_for(patch_size, out_strides, out_indices,
                                                      blocks, randomize):
    """A subset of the pyramid: the same maps as the full model's at those levels (its
    checkpoint loads, the unused levels' tensors unexpected), nothing built for the others."""
    full = randomize(XCiT('nano_12', patch_size=patch_size)).eval()
    model = XCiT('nano_12', patch_size=patch_size, out_strides=out_strides).eval()
    result = model.load_state_dict(full.state_dict(), strict=False)
    levels = [(4, 8, 16, 32).index(s) for s in out_strides]
    assert result.missing_keys == []
    assert {k.split('.')[1] for k in result.unexpected_keys if k.startswith('pyramid.')} <= \
        {str(i) for i in range(4)} - {str(i) for i in levels}
    assert [name for name, _ in model.pyramid.named_children()] == [str(i) for i in levels]
    assert model.out_indices == out_indices and len(model.blocks) == blocks
    assert model.out_strides == out_strides and model.out_channels == (128,) * len(levels)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected, actual = full(x), model(x)
    assert len(actual) == len(out_strides)
    for i, a in zip(levels, actual):
        assert torch.equal(a, expected[i])


def test_out_strides_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match=r'out_strides must be ascending strides among '
                       r'\(4, 8, 16, 32\) \(e\.g\. \(8, 16, 32\) for DETR-style necks, \(16,\) '
                       r'for one map\), got \(16, 8\)'):
        XCiT('nano_12', out_strides=(16, 8))
    with pytest.raises(ValueError, match=r'out_indices must be 3 ascending block indices in '
                       r'\[0, 11\] for a depth-12 XCiT, got \(3, 5, 7, 11\) \(one per level of '
                       r'out_strides=\(8, 16, 32\)\)'):
        XCiT('nano_12', out_strides=(8, 16, 32), out_indices=(3, 5, 7, 11))
