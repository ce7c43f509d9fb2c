"""The XCiT backbone: equivalence with timm, presets, shapes, options."""
import math

import pytest
import timm
import torch

from xcit_dense.models import ARCH_ZOO, XCiT
from xcit_dense.models.xcit import DEFAULT_OUT_INDICES, ConvPatchEmbed, XCABlock


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


def test_frozen_stages_freeze_embedding_and_first_blocks():
    model = XCiT('nano_12', frozen_stages=2)
    model.train()
    frozen = [model.patch_embed, model.pos_embed, model.blocks[0], model.blocks[1]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.blocks[2].parameters())
    assert not model.patch_embed.training and not model.blocks[1].local_mp.bn.training
    assert model.blocks[2].training


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = XCiT('nano_12', patch_size=16)
    ckpt = XCiT('nano_12', patch_size=16, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for model in (plain, ckpt):
        model.train()
        sum(o.sum() for o in model(x)).backward()
        grads.append(model.blocks[0].attn.qkv.weight.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_rejects_non_image_input():
    with pytest.raises(ValueError, match=r'expects a \(B, C, H, W\) image batch'):
        XCiT('nano_12')(torch.randn(3, 32, 32))
