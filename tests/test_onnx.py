"""ONNX export of the backbones (tools/deployment/pytorch2onnx.py, xcit_dense.deploy), checked
with onnxruntime: small custom archs at 64-128 px so that the exports stay quick."""
import onnx  # the deploy extra, which make setup installs: its absence is a failure
import pytest
import torch

from xcit_dense.checkpoint import CheckpointMismatchError
from xcit_dense.deploy import build_backbone, export_onnx, main, max_abs_diff, onnx_session
from xcit_dense.engine import UsageError, build_analysis_model
from xcit_dense.models import XCiT
from xcit_dense.models.streaming import StreamedBlock, StreamedStem

ATOL = 1e-4
XCIT_CONFIG = """
_base_ = '{root}/configs/toy/fpn_xcit-n12-p8_toy-ade-128x128.py'
model = dict(backbone=dict(arch=dict(_delete_=True, embed_dim=64, depth=4, num_heads=4),
                           out_indices=(0, 1, 2, 3)),
             neck=dict(in_channels=[64, 64, 64, 64]))
"""
CROSSVIT_CONFIG = """
_base_ = '{root}/configs/toy/fpn_crossvit-tiny_toy-ade-128x128.py'
model = dict(backbone=dict(arch=dict(_delete_=True, embed_dim=(32, 64), depth=((1, 1, 0),) * 2,
                                     num_heads=(2, 2), mlp_ratio=(2., 2.))),
             neck=dict(in_channels=[32, 32, 64, 64]))
"""


def write_config(tmp_path, text: str, name: str) -> str:
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1]
    path = tmp_path / name
    path.write_text(text.format(root=root))
    return str(path)


def test_xcit_cli_dynamic_with_checkpoint(tmp_path, randomize):
    config = write_config(tmp_path, XCIT_CONFIG, 'xcit.py')
    model = randomize(build_analysis_model(config))
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    out = tmp_path / 'xcit.onnx'
    result = main([config, '--checkpoint', str(ckpt), '--shape', '64', '96', '--out', str(out),
                   '--dynamic'])
    diffs = result['max_abs_diff']
    assert len(diffs) == 2 and (64, 96) in diffs, diffs  # the export size and a second one
    assert max(diffs.values()) <= ATOL, diffs
    graph = onnx.load(str(out)).graph
    assert [o.name for o in graph.output] == ['p4', 'p8', 'p16', 'p32']
    assert [i.name for i in graph.input] == ['image']
    assert not list(tmp_path.glob('*.data'))  # one self-contained file
    # the file holds the checkpoint's weights (a fresh build would differ), at a third size
    # that is not a multiple of the patch size
    session = onnx_session(str(out))
    assert max_abs_diff(model.backbone.eval(), session, (77, 50), seed=1) <= ATOL
    # more tokens (37 x 35) than a streamed chunk: the graph still holds the plain forward
    assert max_abs_diff(model.backbone, session, (290, 280), seed=2) <= ATOL


def test_crossvit_dynamic(tmp_path):
    backbone = build_backbone(write_config(tmp_path, CROSSVIT_CONFIG, 'crossvit.py'))
    out = str(tmp_path / 'crossvit.onnx')
    info = export_onnx(backbone, (96, 96), out, dynamic=True)
    assert info['size_bytes'] > 0
    assert [o.name for o in onnx.load(out).graph.output] == ['p4', 'p8', 'p16', 'p32']
    session = onnx_session(out)
    for shape in ((96, 96), (128, 80), (70, 101)):
        assert max_abs_diff(backbone, session, shape) <= ATOL, shape


def test_streamed_path_never_traced(tmp_path, monkeypatch):
    """At 512x512 (4096 tokens at patch 8) eager CPU inference streams; the export must trace
    the plain forward: no call of the streamed code and no per-chunk unrolling (the graph has
    the nodes of a 128x128 export, where nothing streams)."""
    calls = []
    for cls in (StreamedBlock, StreamedStem):
        original = cls.forward_streamed

        def counted(self, *args, _original=original, **kwargs):
            calls.append(type(self).__name__)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(cls, 'forward_streamed', counted)
    # two blocks and two maps keep the exports quick; BN in the stem, the LPI and the pyramid
    backbone = XCiT(arch=dict(embed_dim=32, depth=2, num_heads=2), patch_size=8,
                    out_indices=(0, 1), out_strides=(8, 16)).eval()
    with torch.no_grad():
        backbone(torch.randn(1, 3, 512, 512))
    assert calls, 'eager CPU inference at 512x512 should stream'
    calls.clear()

    nodes = {}
    for side in (128, 512):
        out = str(tmp_path / f'xcit_{side}.onnx')
        export_onnx(backbone, (side, side), out)
        nodes[side] = len(onnx.load(out).graph.node)
        assert not calls, f'the export at {side}x{side} traced the streamed path: {calls}'
    assert abs(nodes[512] - nodes[128]) <= 0.05 * nodes[128], nodes
    assert max_abs_diff(backbone, onnx_session(out), (512, 512)) <= ATOL


def test_checkpoint_mismatch_is_refused(tmp_path):
    config = write_config(tmp_path, XCIT_CONFIG, 'xcit.py')
    state = build_analysis_model(config).state_dict()
    state.pop('backbone.blocks.0.attn.temperature')
    ckpt = tmp_path / 'partial.pth'
    torch.save({'state_dict': state}, ckpt)
    with pytest.raises(CheckpointMismatchError, match='temperature'):
        build_backbone(config, str(ckpt))


def test_backbone_checkpoints_load_strictly_into_the_exported_backbone(tmp_path, randomize):
    """The tool exports the backbone, so it takes the backbone's weights from a backbone
    checkpoint (xcit2mmdet.py's, the release's layout) or a whole model's, and insists on
    every backbone tensor, not on the neck's and heads'."""
    config = write_config(tmp_path, XCIT_CONFIG, 'xcit.py')
    model = randomize(build_analysis_model(config))
    backbone_state = {k[len('backbone.'):]: v for k, v in model.state_dict().items()
                      if k.startswith('backbone.')}
    files = {
        'converter': {'state_dict': backbone_state},  # tools/model_converters/xcit2mmdet.py
        'prefixed': {'state_dict': {f'backbone.{k}': v for k, v in backbone_state.items()}},
        'whole model': {'state_dict': model.state_dict()},
    }
    for name, ckpt in files.items():
        path = tmp_path / f'{name.replace(" ", "_")}.pth'
        torch.save(ckpt, path)
        loaded = build_backbone(config, str(path)).state_dict()
        assert loaded.keys() == backbone_state.keys(), name
        assert all(torch.equal(loaded[k], v) for k, v in backbone_state.items()), name
    backbone_state.pop('pyramid.0.0.weight')  # e.g. an ImageNet file: no pyramid
    torch.save({'state_dict': backbone_state}, tmp_path / 'no_pyramid.pth')
    with pytest.raises(CheckpointMismatchError, match=r'no_pyramid\.pth does not fit the '
                       r"config's XCiT backbone(.|\n)*pyramid\.0\.0\.weight"):
        build_backbone(config, str(tmp_path / 'no_pyramid.pth'))


@pytest.mark.parametrize('args, message', [
    (['--shape', '0', '64', '--out', 'x.onnx'], 'at least 2 pixels'),
    (['--shape', '64', '64', '--out', 'x.txt'], '.onnx'),
    (['--shape', '64', '64', '--out', 'x.onnx', '--checkpoint', 'missing.pth'], 'missing.pth'),
])
def test_cli_usage_errors(tmp_path, args, message):
    config = write_config(tmp_path, XCIT_CONFIG, 'xcit.py')
    with pytest.raises(UsageError, match=message):
        main([config] + args)
