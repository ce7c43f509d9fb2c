"""ONNX export of a config's backbone (XCiT or CrossViT), checked with onnxruntime:
``tools/deployment/pytorch2onnx.py``.

The graph takes a (1, 3, H, W) float image and returns the backbone's pyramid maps, named by
stride (``p4``, ``p8``, ``p16``, ``p32``). It is exported with torch's ``torch.export``-based
exporter (``dynamo=True``; needs ``onnx`` and ``onnxscript``, the ``deploy`` extra): the
TorchScript exporter would bake the height and width into the positional encoding, so its
graphs are only right at the export size. The image is padded inside the graph to the
backbone's ``pad_multiple``, so a ``--dynamic`` graph is right at any size, not only at
multiples of the patch size. Export runs the plain forward: the streamed CPU path
(:mod:`xcit_dense.models.streaming`) is never traced (``can_stream`` is False while exporting).

Needs OpenMMLab (the config's model is built with mmdet's or mmseg's registry).
"""
import argparse
import os
import statistics
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from torch import nn

from .checkpoint import CheckpointMismatchError, load_state_dict_file, unwrap_state_dict
from .checkpoint.load import backbone_part
from .engine import UsageError, build_analysis_model

# Largest height/width a --dynamic graph is exported for (a bound torch.export needs).
MAX_SIDE = 16384
DEFAULT_ATOL = 1e-4


class PaddedBackbone(nn.Module):
    """The backbone behind a pad of the image to its ``pad_multiple`` (bottom and right, as the
    backbone's own forward does), computed from the input's symbolic size so that a graph
    exported at one size stays right at others."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        m = self.backbone.pad_multiple
        H, W = x.shape[-2:]
        x = F.pad(x, (0, (m - W % m) % m, 0, (m - H % m) % m))
        return tuple(self.backbone(x))


def output_names(backbone: nn.Module) -> List[str]:
    """The ONNX outputs' names: ``p{stride}`` for each of the backbone's ``out_strides``."""
    return [f'p{s}' for s in backbone.out_strides]


def build_backbone(config: Union[str, Config], checkpoint: Optional[str] = None) -> nn.Module:
    """The backbone of a config in eval mode (pretrained loading off, SyncBN as BN), with the
    weights of ``checkpoint`` if given: a whole-model (detector or segmentor) checkpoint, whose
    ``backbone.*`` tensors are taken, or a backbone checkpoint in any format the backbone
    reads (``tools/model_converters/xcit2mmdet.py``'s, the release's, timm's...). Every tensor
    of the backbone must come from it; the neck and heads, which are not exported, need not.

    Raises:
        CheckpointMismatchError: The checkpoint lacks backbone tensors or has some of another
            shape; names the file.
    """
    backbone = build_analysis_model(config).backbone.eval()
    if checkpoint:
        state = backbone_part(unwrap_state_dict(load_state_dict_file(checkpoint)))
        try:
            backbone.load_state_dict(state, strict=True)
        except CheckpointMismatchError:
            raise
        except RuntimeError as e:
            raise CheckpointMismatchError(
                f'Checkpoint {checkpoint} does not fit the config\'s {type(backbone).__name__} '
                f'backbone, so part of it would be exported at its initialisation.\n{e}') from e
    return backbone


def export_onnx(backbone: nn.Module, shape: Sequence[int], out: str, dynamic: bool = False,
                opset: int = 18) -> Dict[str, float]:
    """Export ``backbone`` to ``out`` at a (1, 3, H, W) input, with dynamic height and width
    if ``dynamic``, as one self-contained file (weights inside: every preset is far below
    protobuf's 2 GB). Returns the export time (s) and the file size (bytes)."""
    H, W = shape
    dummy = torch.randn(1, 3, H, W)
    kwargs = {}
    if dynamic:
        kwargs['dynamic_shapes'] = {'x': {2: torch.export.Dim('height', min=2, max=MAX_SIDE),
                                          3: torch.export.Dim('width', min=2, max=MAX_SIDE)}}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    start = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(PaddedBackbone(backbone).eval(), (dummy,), out, dynamo=True,
                          input_names=['image'], output_names=output_names(backbone),
                          opset_version=opset, verbose=False, external_data=False, **kwargs)
    seconds = time.perf_counter() - start
    return dict(export_s=seconds, size_bytes=os.path.getsize(out))


def onnx_session(path: str, threads: int = 0):
    """An onnxruntime CPU session of an exported file (``threads`` 0: onnxruntime's default)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def max_abs_diff(backbone: nn.Module, session, shape: Sequence[int],
                 seed: int = 0) -> float:
    """The largest absolute difference between onnxruntime's and PyTorch's (eager, the CPU
    path it would take) outputs on a random (1, 3, H, W) image; also checks the shapes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, *shape, generator=g)
    with torch.no_grad():
        ref = backbone(x)
    outs = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    if len(outs) != len(ref):
        raise AssertionError(f'ONNX graph has {len(outs)} outputs, PyTorch {len(ref)}')
    diff = 0.
    for name, o, r in zip(output_names(backbone), outs, ref):
        if tuple(o.shape) != tuple(r.shape):
            raise AssertionError(f'{name}: onnxruntime shape {tuple(o.shape)}, PyTorch '
                                 f'{tuple(r.shape)} at input {tuple(shape)}')
        diff = max(diff, float((torch.from_numpy(o) - r).abs().max()))
    return diff


def time_both(backbone: nn.Module, session, shape: Sequence[int],
              runs: int) -> Tuple[float, float]:
    """Median seconds per image of onnxruntime and PyTorch eager (no_grad, CPU) at ``shape``,
    over ``runs`` runs after one warm-up each."""
    x = torch.randn(1, 3, *shape)
    feed = {session.get_inputs()[0].name: x.numpy()}

    def median(fn) -> float:
        fn()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    with torch.no_grad():
        return median(lambda: session.run(None, feed)), median(lambda: backbone(x))


def second_shape(shape: Sequence[int], multiple: int) -> Tuple[int, int]:
    """A second size to check a dynamic graph at: other than the export size, not a multiple
    of the patch size (so the in-graph padding is exercised)."""
    H, W = shape
    return (max(2, H * 3 // 4 + multiple // 2 + 1), max(2, W * 5 // 4 + multiple // 2 + 1))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='pytorch2onnx.py',
        description='Export a config\'s backbone (XCiT or CrossViT; its pyramid maps as outputs '
                    'p4, p8, ...) to ONNX and check it with onnxruntime against PyTorch.')
    parser.add_argument('config')
    parser.add_argument('--checkpoint', help='whole-model (detector/segmentor) or backbone '
                        'checkpoint; every backbone tensor must come from it; random weights '
                        'without it')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='export size (batch 1)')
    parser.add_argument('--out', required=True, help='output .onnx file')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic height and width (checked at a second size too)')
    parser.add_argument('--opset', type=int, default=18)
    parser.add_argument('--atol', type=float, default=DEFAULT_ATOL,
                        help='largest max abs difference to PyTorch accepted (default 1e-4)')
    parser.add_argument('--bench', type=int, default=0, metavar='RUNS',
                        help='also time onnxruntime and PyTorch eager CPU at the export size')
    parser.add_argument('--threads', type=int, default=0,
                        help='CPU threads of both (default: the libraries\' own)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """The tool: export, check, print; returns what it printed as a dict."""
    args = parse_args(argv)
    H, W = args.shape
    if H < 2 or W < 2:
        raise UsageError(f'--shape H W must be at least 2 pixels each, got {H} {W}')
    if not args.out.endswith('.onnx'):
        raise UsageError(f'--out must name a .onnx file, got {args.out!r}')
    if not os.path.isfile(args.config):
        raise UsageError(f'config {args.config!r} does not exist')
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        raise UsageError(f'checkpoint {args.checkpoint!r} does not exist')
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise UsageError(f'{e.name} is not installed: pip install -e ".[deploy]" '
                         '(or make setup)') from e
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    backbone = build_backbone(cfg, args.checkpoint)
    name = type(backbone).__name__
    info = export_onnx(backbone, (H, W), args.out, args.dynamic, args.opset)
    result = dict(info, out=args.out)
    print(f'{name} of {args.config} exported to {args.out} at 1x3x{H}x{W}'
          f'{" (dynamic height and width)" if args.dynamic else ""}: outputs '
          f'{", ".join(output_names(backbone))}, {info["size_bytes"] / 2**20:.1f} MiB, '
          f'{info["export_s"]:.1f} s')

    session = onnx_session(args.out, args.threads)
    shapes = [(H, W)]
    if args.dynamic:
        shapes.append(second_shape((H, W), backbone.pad_multiple))
    result['max_abs_diff'] = {}
    for shape in shapes:
        diff = max_abs_diff(backbone, session, shape)
        result['max_abs_diff'][shape] = diff
        print(f'onnxruntime vs PyTorch at {shape[0]}x{shape[1]}: max abs difference {diff:.3g}'
              f' ({"ok" if diff <= args.atol else "FAILED"}, tolerance {args.atol:g})')
    if args.bench:
        ort_s, torch_s = time_both(backbone, session, (H, W), args.bench)
        result.update(ort_s=ort_s, torch_s=torch_s)
        print(f'CPU time per image at {H}x{W} (median of {args.bench}): onnxruntime '
              f'{ort_s * 1e3:.0f} ms, PyTorch eager {torch_s * 1e3:.0f} ms '
              f'({torch.get_num_threads()} torch threads)')
    worst = max(result['max_abs_diff'].values())
    if worst > args.atol:
        raise SystemExit(f'pytorch2onnx.py: error: onnxruntime differs from PyTorch by {worst:.3g}'
                         f' > {args.atol:g}')
    return result
