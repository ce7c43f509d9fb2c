"""FLOPs and parameters of a model (or its backbone alone) at a given input size.

    python tools/analysis_tools/get_flops.py CONFIG --shape 800 1333 [--backbone-only]

FLOPs are counted as multiply-adds (fvcore's and mmdet's convention; one multiply-add = one
FLOP) by tracing the model on a random image of the given size; weights are not loaded. The
model's own FLOPs are counted: the trace runs XCiT unchunked (streamed CPU inference recomputes
a few halo rows per band, an implementation detail).
"""
import argparse
import os

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import bmm_flop_jit
from mmengine.config import Config

import xcit_dense  # noqa: F401
from xcit_dense.engine import (build_analysis_model, config_scope, dummy_data_samples,
                               short_errors)


def baddbmm_flop_jit(inputs, outputs):
    """baddbmm(bias, a, b) costs what bmm(a, b) costs (the bias add is not a multiply-add).
    Ours: mmengine's default op handles have no ``aten::baddbmm``, which XCA's output is."""
    return bmm_flop_jit(inputs[1:3], outputs)


def model_inputs(model, scope: str, H: int, W: int):
    """The traced callable and its arguments: the model's tensor forward on a random image."""
    samples = dummy_data_samples(scope, H, W)
    return (lambda x: model(x, samples, mode='tensor')), (torch.randn(1, 3, H, W),)


def count_flops(module, args) -> int:
    """Multiply-adds of ``module(*args)``, by mmengine's ``FlopAnalyzer`` with our handle for
    ``aten::baddbmm`` added. (mmengine's ``get_model_complexity_info`` builds its analyzer with
    the default handles only, so it would miss XCA's output, and traces the model a second
    time for activations.)"""
    analyzer = FlopAnalyzer(module, args).set_op_handle('aten::baddbmm', baddbmm_flop_jit)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analyzer.total()


class _Wrap(torch.nn.Module):
    def __init__(self, fn, owner):
        super().__init__()
        self.fn, self.owner = fn, owner

    def forward(self, x):
        return self.fn(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1333], metavar=('H', 'W'))
    parser.add_argument('--backbone-only', action='store_true')
    args = parser.parse_args()
    cfg = Config.fromfile(args.config)
    model = build_analysis_model(cfg)
    model.requires_grad_(False)  # no autograd graph, yet grad mode keeps XCiT unchunked
    H, W = args.shape
    with torch.enable_grad():
        if args.backbone_only:
            target, inputs = model.backbone, (torch.randn(1, 3, H, W),)
        else:
            fn, inputs = model_inputs(model, config_scope(cfg), H, W)
            target = _Wrap(fn, model)
        flops = count_flops(target, inputs)
    params = parameter_count(model.backbone if args.backbone_only else model)['']
    what = 'backbone' if args.backbone_only else type(model).__name__
    print(f'{what} of {args.config} at {H}x{W}: {flops / 1e9:.1f} GFLOPs (multiply-adds), '
          f'{params / 1e6:.2f} M parameters')


if __name__ == '__main__':
    with short_errors(os.path.basename(__file__)):
        main()
