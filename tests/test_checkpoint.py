"""Pretrained loading: every checkpoint format gives the same backbone as loading the
weights directly, and bad checkpoints fail loudly."""
import os
import re
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import save_file

from xcit_dense.checkpoint import convert_xcit_state_dict, load_xcit_checkpoint
from xcit_dense.models import XCiT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def timm_state(randomize):
    """A randomly initialised timm XCiT-N12/16 (BN statistics and LayerScale randomised)."""
    torch.manual_seed(0)
    return randomize(timm.create_model('xcit_nano_12_p16_224')).state_dict()


@pytest.fixture(scope='module')
def reference(timm_state):
    """Backbone outputs with the timm weights loaded directly, pyramid weights fixed."""
    torch.manual_seed(1)
    model = XCiT('nano_12', patch_size=16).eval()
    pyramid = {k: v.clone() for k, v in model.state_dict().items() if k.startswith('pyramid.')}
    model.load_state_dict({**timm_state, **pyramid}, strict=False)
    x = torch.randn(1, 3, 80, 112)
    with torch.no_grad():
        return x, pyramid, model(x)


def outputs_after_loading(path_or_state, pyramid, x):
    model = XCiT('nano_12', patch_size=16).eval()
    model.load_state_dict(pyramid, strict=False)
    info = load_xcit_checkpoint(model, path_or_state)
    with torch.no_grad():
        return model(x), info


def assert_same(outs, expected):
    assert all(torch.equal(a, b) for a, b in zip(outs, expected))


def release_imagenet(timm_state):
    """The XCiT release's layout: {'model': ...} with ``pos_embeder`` and fused cls qkv."""
    state = {k.replace('pos_embed.', 'pos_embeder.'): v for k, v in timm_state.items()}
    return {'model': state, 'epoch': 400}


def mmpretrain_layout(timm_state):
    """mmpretrain's XCiT key names (ConvModule stem and LPI, FFN, xca_layers; checked against
    mmpretrain 1.2's ``XCiT.state_dict()``), with its classifier outside the backbone."""
    out = {}
    for k, v in timm_state.items():
        if k.startswith('head.'):
            out['head.fc.' + k[len('head.'):]] = v
            continue
        k = re.sub(r'^blocks\.', 'xca_layers.', re.sub(r'^cls_attn_blocks\.', 'ca_layers.', k))
        k = k.replace('mlp.fc1.', 'ffn.layers.0.0.').replace('mlp.fc2.', 'ffn.layers.1.')
        k = k.replace('local_mp.conv1.', 'local_mp.conv1.conv.')
        k = k.replace('local_mp.bn.', 'local_mp.conv1.bn.')
        k = k.replace('local_mp.conv2.', 'local_mp.conv2.conv.')
        k = k.replace('pos_embed.token_projection.', 'pos_embed.token_projection.conv.')
        if k.startswith('patch_embed.proj.'):
            _, _, idx, sub, rest = k.split('.', 4)  # patch_embed.proj.{2i}.{0|1}.param
            k = f'patch_embed.proj.{int(idx) // 2}.{"conv" if sub == "0" else "bn"}.{rest}'
        out['backbone.' + k] = v
    return {'state_dict': out, 'meta': {}}


def release_dense(timm_state, pyramid):
    """The release's Mask R-CNN checkpoints: backbone.* with fpn1..fpn4, plus neck and heads."""
    state = {'backbone.' + k.replace('pos_embed.', 'pos_embeder.'): v
             for k, v in timm_state.items()
             if not k.startswith(('cls_token', 'cls_attn_blocks', 'norm.', 'head.'))}
    for k, v in pyramid.items():
        level, rest = k[len('pyramid.'):].split('.', 1)
        state[f'backbone.fpn{int(level) + 1}.{rest}'] = v
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 128, 1, 1)
    state['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(81, 1024)
    return {'state_dict': state, 'meta': {'epoch': 36}}


@pytest.mark.parametrize('fmt', ['timm.pth', 'timm.safetensors', 'xcit.pth', 'mmpretrain.pth'])
def test_imagenet_formats_match_direct_loading(fmt, timm_state, reference, tmp_path):
    x, pyramid, expected = reference
    path = str(tmp_path / fmt)
    if fmt == 'timm.safetensors':
        save_file(timm_state, path)
    else:
        builders = {'timm.pth': lambda s: s, 'xcit.pth': release_imagenet,
                    'mmpretrain.pth': mmpretrain_layout}
        torch.save(builders[fmt](timm_state), path)
    outs, info = outputs_after_loading(path, pyramid, x)
    assert_same(outs, expected)
    assert info['unexpected'] == []
    # ImageNet checkpoints have no pyramid: exactly its parameters are reported missing
    assert sorted(info['missing']) == sorted(
        k for k in pyramid if not k.endswith('num_batches_tracked'))


def test_release_dense_checkpoint_loads_backbone_and_adapters(timm_state, reference, tmp_path):
    x, pyramid, expected = reference
    path = str(tmp_path / 'mask_rcnn_xcit.pth')
    torch.save(release_dense(timm_state, pyramid), path)
    model = XCiT('nano_12', patch_size=16).eval()  # fresh pyramid: must come from the file
    info = load_xcit_checkpoint(model, path)
    assert info == dict(missing=[], unexpected=[])
    with torch.no_grad():
        assert_same(model(x), expected)


def test_converter_tool_writes_a_plain_backbone_checkpoint(timm_state, reference, tmp_path):
    x, pyramid, expected = reference
    src, dst = tmp_path / 'release.pth', tmp_path / 'converted.pth'
    torch.save(release_imagenet(timm_state), src)
    proc = subprocess.run([sys.executable, 'tools/model_converters/xcit2mmdet.py', str(src),
                           str(dst)], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "(the XCiT release's format)" in proc.stdout
    converted = torch.load(dst, weights_only=True)['state_dict']
    assert not any(k.startswith(('pos_embeder', 'cls_', 'head', 'norm.')) for k in converted)
    outs, _ = outputs_after_loading(str(dst), pyramid, x)
    assert_same(outs, expected)


def test_init_cfg_pretrained_loads_in_init_weights(timm_state, reference, tmp_path):
    x, pyramid, expected = reference
    path = str(tmp_path / 'timm.pth')
    torch.save(timm_state, path)
    model = XCiT('nano_12', patch_size=16, init_cfg=dict(type='Pretrained', checkpoint=path))
    model.load_state_dict(pyramid, strict=False)
    model.init_weights()
    with torch.no_grad():
        assert_same(model.eval()(x), expected)


@pytest.mark.parametrize('init_cfg', [dict(type='Kaiming'), dict(type='Pretrained')])
def test_init_cfg_other_than_pretrained_is_an_error(init_cfg):
    from xcit_dense.models import CrossViT
    for model, name in ((XCiT('nano_12', init_cfg=init_cfg), 'XCiT'),
                        (CrossViT('tiny', init_cfg=init_cfg), 'CrossViT')):
        with pytest.raises(ValueError, match=re.escape(
                f"{name} init_cfg must be dict(type='Pretrained', checkpoint=PATH), "
                f'got {init_cfg}')):
            model.init_weights()


def test_detected_formats(timm_state):
    pyramid = {k: v for k, v in XCiT('nano_12').state_dict().items() if k.startswith('pyramid')}
    assert convert_xcit_state_dict(timm_state)[1] == 'timm'
    assert convert_xcit_state_dict(release_imagenet(timm_state))[1] == 'xcit-release'
    assert convert_xcit_state_dict(mmpretrain_layout(timm_state))[1] == 'mmpretrain'
    assert convert_xcit_state_dict(release_dense(timm_state, pyramid))[1] == 'xcit-release'
    ours = {'backbone.' + k: v for k, v in XCiT('nano_12').state_dict().items()}
    assert convert_xcit_state_dict({'state_dict': ours})[1] == 'xcit-dense'


def test_checkpoint_without_xcit_keys_is_an_error(tmp_path):
    path = str(tmp_path / 'resnet.pth')
    torch.save({'state_dict': {'conv1.weight': torch.zeros(64, 3, 7, 7),
                               'layer1.0.bn1.weight': torch.zeros(64)}}, path)
    with pytest.raises(RuntimeError, match=r'No key of checkpoint .*resnet\.pth matches the '
                                           r"XCiT backbone.*'conv1.weight'"):
        load_xcit_checkpoint(XCiT('nano_12'), path)


def test_checkpoint_of_another_variant_lists_the_mismatches(tmp_path):
    path = str(tmp_path / 'tiny.pth')
    torch.save(XCiT('tiny_12', patch_size=16).state_dict(), path)
    with pytest.raises(RuntimeError, match=r'does not fit this XCiT architecture: it looks like '
                                           r'embed_dim=192, 12 blocks, patch_size=16, the model '
                                           r'is embed_dim=128, 12 blocks, patch_size=16.*\n  '
                                           r'patch_embed\.proj\.0\.0\.weight: checkpoint '
                                           r'\(24, 3, 3, 3\) vs model \(16, 3, 3, 3\)'):
        load_xcit_checkpoint(XCiT('nano_12', patch_size=16), path)


def test_checkpoint_of_another_model_whose_names_match_in_part_is_an_error(tmp_path):
    """A timm ViT-Ti shares 144 key names and shapes with XCiT-T12/16 (its blocks' norms, qkv,
    projections and MLPs), but has no XCA temperatures, LPI, LayerScale or convolutional patch
    embedding: loading it would leave 200 tensors of the transformer at their initialisation,
    which is an error, not a warning. (Only the pyramid may be missing: ImageNet files.)"""
    import timm
    path = str(tmp_path / 'vit.pth')
    torch.save({'model': timm.create_model('vit_tiny_patch16_224').state_dict()}, path)
    model = XCiT('tiny_12', patch_size=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match=r'does not fit this XCiT architecture.*It lacks 190 '
                                           r'tensors of the transformer.*\nMissing keys \(200\): '
                                           r"\['patch_embed\.proj\.0\.0\.weight'"):
        load_xcit_checkpoint(model, path)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched


def test_checkpoint_of_another_depth_lists_missing_and_unexpected_keys(tmp_path):
    # tiny_24 and tiny_12 share every tensor shape; only the depth tells them apart
    path = str(tmp_path / 'tiny24.pth')
    torch.save(XCiT('tiny_24', patch_size=16, out_indices=(2, 5, 8, 23)).state_dict(), path)
    model = XCiT('tiny_12', patch_size=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError) as info:
        load_xcit_checkpoint(model, path)
    message = str(info.value)
    assert 'It has 24 blocks, the model 12' in message
    assert '\nMissing keys (0): []' in message
    assert "\nUnexpected keys (324): ['blocks.12.gamma1', " in message
    assert ', ... 304 more]' in message
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched


def test_missing_truncated_and_non_checkpoint_files(tmp_path, timm_state):
    model = XCiT('nano_12')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_xcit_checkpoint(model, str(tmp_path / 'nope.pth'))
    good = tmp_path / 'good.pth'
    torch.save(timm_state, good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:4096])
    with pytest.raises(RuntimeError, match='truncated.pth.*not a readable PyTorch checkpoint'):
        load_xcit_checkpoint(model, str(truncated))
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    with pytest.raises(RuntimeError, match='not a readable PyTorch checkpoint'):
        load_xcit_checkpoint(model, str(text))
    bad_st = tmp_path / 'bad.safetensors'
    bad_st.write_bytes(b'\x00' * 16)
    with pytest.raises(RuntimeError, match='not a readable safetensors file'):
        load_xcit_checkpoint(model, str(bad_st))


class _Payload:
    def __reduce__(self):
        return (os.system, ('touch /tmp/xcit_dense_pwned',))


def test_pickled_code_is_refused_not_executed(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': _Payload()}, path)
    marker = '/tmp/xcit_dense_pwned'
    if os.path.exists(marker):
        os.remove(marker)
    with pytest.raises(RuntimeError, match='refused and nothing in it was executed'):
        load_xcit_checkpoint(XCiT('nano_12'), str(path))
    assert not os.path.exists(marker)


def test_model_ending_before_the_last_block_loads_its_own_and_imagenet_checkpoints(
        timm_state, tmp_path, monkeypatch):
    """out_indices ending at block 10 keep 11 blocks: the model's own 11-block checkpoint
    loads, and a 12-block ImageNet checkpoint loads with its unused block dropped (logged)."""
    model = XCiT('nano_12', patch_size=16, out_indices=(2, 5, 8, 10))
    assert len(model.blocks) == 11
    own = tmp_path / 'own.pth'
    torch.save(model.state_dict(), own)
    other = XCiT('nano_12', patch_size=16, out_indices=(2, 5, 8, 10))
    assert load_xcit_checkpoint(other, str(own)) == dict(missing=[], unexpected=[])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in other.state_dict().items())
    imagenet = tmp_path / 'imagenet.pth'
    torch.save(timm_state, imagenet)
    logged = []
    monkeypatch.setattr('xcit_dense.checkpoint.xcit._log', logged.append)
    info = load_xcit_checkpoint(other, str(imagenet))
    assert info['unexpected'] == []
    assert torch.equal(other.state_dict()['blocks.10.attn.qkv.weight'],
                       timm_state['blocks.10.attn.qkv.weight'])
    assert logged == ["The model keeps 11 of its 12 blocks (out_indices end at block 10): the "
                      "checkpoint's block 11 is not loaded"]
    tiny24 = tmp_path / 'tiny24.pth'
    torch.save(XCiT('tiny_24', patch_size=16).state_dict(), tiny24)
    with pytest.raises(RuntimeError, match=re.escape(
            'It has 24 blocks, the model 11 (of a 12-block preset)')):
        load_xcit_checkpoint(XCiT('tiny_12', patch_size=16, out_indices=(2, 5, 8, 10)),
                             str(tiny24))


def test_description_names_the_writers_versions_without_mmengines_git_hash():
    from xcit_dense.checkpoint import describe_checkpoint
    ckpt = {'meta': {'mmengine_version': '0.10.7' + '03d0a81e2420572efb3770b80805d86f5a4e1200',
                     'mmdet_version': '3.3.0', 'dataset_meta': {'classes': ('a', 'b')}},
            'state_dict': {'backbone.w': torch.zeros(1), 'neck.w': torch.zeros(1)}}
    assert describe_checkpoint(ckpt) == ('an OpenMMLab checkpoint written by mmdet 3.3.0, '
                                         'mmengine 0.10.7; top-level modules: backbone, neck; '
                                         '2 classes')
