"""Convolution stacks run in bands of rows with halos: the building block of the necks and
heads whose CPU inference of large maps streams (:class:`BandedFPN` here; the RPN head and
Semantic FPN's decoder in :mod:`xcit_dense.streamed_det` and :mod:`xcit_dense.streamed_seg`).

A stack of stride-1 convolutions with 'same' zero padding, per-pixel norms and activations
gives output row r from input rows r - h ... r + h, h the sum of the paddings (the halo). A
band of output rows [r0, r1) is therefore exact when computed from input rows
[r0 - h, r1 + h) clipped to the map, keeping the rows whose inputs were all real.
"""
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import DenseBackbone
from .streaming import RowSource, _acts_per_pixel, can_stream

# Output elements (channels x rows x columns) of a band: a few MB, in the last-level cache.
BAND_ELEMENTS = 2**20


def halo(module: nn.Module) -> Optional[int]:
    """The halo (rows of context on each side) of a stack of stride-1 'same' convolutions,
    per-pixel norms (eval-mode BatchNorm) and activations, or None when the module is not
    such a stack (a strided conv, an explicit padding layer, GroupNorm, attention...)."""
    if isinstance(module, nn.Conv2d):
        k, d, p = module.kernel_size, module.dilation, module.padding
        if (module.stride != (1, 1) or module.padding_mode != 'zeros' or isinstance(p, str)
                or any(pi != di * (ki - 1) // 2 or ki % 2 == 0
                       for ki, di, pi in zip(k, d, p))):
            return None
        return p[0]
    if isinstance(module, (nn.ReLU, nn.GELU, nn.SiLU, nn.Identity, nn.LeakyReLU,
                           nn.modules.batchnorm._BatchNorm)):
        return 0 if _acts_per_pixel(module) else None
    if type(module).__name__ == 'ConvModule':  # mmcv: conv, norm, activation
        if getattr(module, 'with_explicit_padding', False):
            return None
        if any(halo(m) is None for m in module.children()):
            return None
        return halo(module.conv)
    if isinstance(module, nn.Sequential):
        total = 0
        for m in module:
            h = halo(m)
            if h is None:
                return None
            total += h
        return total
    return None


def band_rows(channels: int, width: int) -> int:
    """Rows per band for outputs of ``channels`` x ``width``."""
    return max(8, BAND_ELEMENTS // max(1, channels * width))


def run_in_bands(stack: nn.Module, rows: Callable[[int, int], torch.Tensor], height: int,
                 outputs: Sequence[torch.Tensor], tail: Callable = lambda y, r0, r1: (y,),
                 stack_halo: Optional[int] = None) -> None:
    """Compute ``tail(stack(x))`` on bands of output rows and write the results into
    ``outputs`` (one tensor per result of ``tail``, rows along dim 2). ``rows(a, b)`` returns
    input rows [a, b) of ``stack``'s input (computed on demand, so the input need not exist in
    full); ``tail(y, r0, r1)`` gets the band's output rows [r0, r1) of ``stack`` and must act
    per pixel (1x1 convolutions, activations, adding other maps' rows r0 to r1)."""
    h = halo(stack) if stack_halo is None else stack_halo
    widths = [m.out_channels for m in stack.modules() if isinstance(m, nn.Conv2d)]
    step = band_rows(max([o.shape[1] for o in outputs] + widths), outputs[0].shape[3])
    for r0 in range(0, height, step):
        r1 = min(r0 + step, height)
        a0, a1 = max(r0 - h, 0), min(r1 + h, height)
        results = tail(stack(rows(a0, a1))[:, :, r0 - a0:r1 - a0], r0, r1)
        for out, y in zip(outputs, results):
            out[:, :, r0:r1] = y


def nearest_rows(x: torch.Tensor, out_size: Sequence[int], r0: int, r1: int,
                 scale_factor: Optional[float] = None) -> torch.Tensor:
    """Rows [r0, r1) of ``F.interpolate(x, size=out_size, mode='nearest')`` (or with
    ``scale_factor``), indexed as torch computes them (``floor(dst * in / out)``, or
    ``dst / scale_factor``)."""
    def index(n_in: int, n_out: int, start: int, stop: int) -> torch.Tensor:
        dst = torch.arange(start, stop, dtype=torch.float32)
        if n_in == n_out:
            return dst.long()
        scale = (1. / scale_factor if scale_factor else
                 torch.tensor(n_in, dtype=torch.float32) / n_out)
        return torch.floor(dst * scale).long().clamp(max=n_in - 1)
    H, W = out_size
    ri = index(x.shape[2], H, r0, r1).to(x.device)
    ci = index(x.shape[3], W, 0, W).to(x.device)
    return x.index_select(2, ri).index_select(3, ci)


def use_bands(module: nn.Module, x: torch.Tensor, min_pixels: int) -> bool:
    """Whether a neck or head runs ``x`` in bands: CPU inference (as the backbone's streamed
    path, :func:`~xcit_dense.models.streaming.can_stream`) of a map over ``min_pixels``."""
    return x.shape[2] * x.shape[3] > min_pixels and can_stream(module, x)


class BandedFPN:
    """The inference forward of an FPN neck (mmdet's and mmseg's share their attributes) with
    its finest level computed in bands: the lateral 1x1 convolution, the nearest-neighbour
    top-down sum and the 3x3 output convolution run band by band (the output convolution's
    halo recomputes a row of the sum on each side), so neither the finest lateral map nor the
    sum exists in full; the coarser levels run as in the FPN. Used for maps over
    :attr:`banded_pixels` pixels when :meth:`bands_apply` (exact: same arithmetic). The finest
    input may be a :class:`~xcit_dense.models.streaming.RowSource` (the pyramid's stride-4
    level computed band by band, see ``StreamedPyramid.forward_streamed``). Given a list, it
    releases the input maps once read."""

    #: Finest maps over this many pixels (a 2048 x 2048 image at stride 4) run in bands.
    banded_pixels: int = 2**18

    def bands_apply(self, inputs: Sequence[torch.Tensor]) -> bool:
        cfg = self.upsample_cfg
        return (len(self.lateral_convs) > 1 and cfg.get('mode', 'nearest') == 'nearest'
                and set(cfg) <= {'mode', 'scale_factor'} and halo(self.lateral_convs[0]) == 0
                and halo(self.fpn_convs[0]) is not None
                and use_bands(self, inputs[self.start_level], self.banded_pixels))

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple:
        if not self.bands_apply(inputs):
            return super().forward(inputs)
        assert len(inputs) == len(self.in_channels)
        n, start = len(self.lateral_convs), self.start_level
        scale_factor = self.upsample_cfg.get('scale_factor')
        laterals = [None] + [conv(inputs[i + start])
                             for i, conv in enumerate(self.lateral_convs) if i > 0]
        finest = inputs[start]
        if isinstance(inputs, list):  # given a list, release the maps as they are used up
            keep = self.backbone_end_level - 1 if self.add_extra_convs == 'on_input' else None
            for i in range(start, self.backbone_end_level):
                if i != keep:
                    inputs[i] = None
        for i in range(n - 1, 1, -1):  # the coarse levels' top-down path, as in the FPN
            size = {} if scale_factor else dict(size=laterals[i - 1].shape[2:])
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], **size,
                                                              **self.upsample_cfg)
        out = self._finest_in_bands(finest, laterals[1], scale_factor)
        finest = None  # the last reference to the finest input (or its trunk map)
        outs = [out] + [self.fpn_convs[i](laterals[i]) for i in range(1, n)]
        return tuple(self.extra_levels(inputs, laterals, outs))

    def _finest_in_bands(self, finest, coarser: torch.Tensor,
                         scale_factor: Optional[float]) -> torch.Tensor:
        """The finest output level: lateral, top-down sum with ``coarser`` (the next level's
        summed lateral) and output convolution, band by band."""
        finest_rows = (finest.rows if isinstance(finest, RowSource)
                       else lambda a, b: finest[:, :, a:b])
        H, W = finest.shape[2:]

        def lateral_rows(a: int, b: int) -> torch.Tensor:
            return (self.lateral_convs[0](finest_rows(a, b))
                    + nearest_rows(coarser, (H, W), a, b, scale_factor))
        out = torch.empty(finest.shape[0], self.out_channels, H, W, device=finest.device,
                          dtype=finest.dtype)
        run_in_bands(self.fpn_convs[0], lateral_rows, H, [out])
        return out

    def extra_levels(self, inputs, laterals, outs) -> list:
        """The levels above the backbone's, as mmdet's and mmseg's ``FPN.forward`` add them."""
        used = len(outs)
        if self.num_outs <= used:
            return outs
        if not self.add_extra_convs:
            for _ in range(self.num_outs - used):
                outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            return outs
        source = {'on_input': lambda: inputs[self.backbone_end_level - 1],
                  'on_lateral': lambda: laterals[-1],
                  'on_output': lambda: outs[-1]}[self.add_extra_convs]()
        outs.append(self.fpn_convs[used](source))
        for i in range(used + 1, self.num_outs):
            outs.append(self.fpn_convs[i](F.relu(outs[-1]) if self.relu_before_extra_convs
                                          else outs[-1]))
        return outs


class StreamedFeatures:
    """A detector's or segmentor's ``extract_feat`` (backbone, then neck) in which, in CPU
    inference with a dense backbone and a :class:`BandedFPN` neck reading the pyramid from
    its first level, the pyramid's stride-4 level is computed band by band as the FPN reads it
    (a :class:`~xcit_dense.models.streaming.RowSource`): the largest map of the pyramid never
    exists in full. Otherwise, and in training, the codebase's own ``extract_feat``."""

    def extract_feat(self, inputs: torch.Tensor) -> tuple:
        neck = getattr(self, 'neck', None)
        backbone = self.backbone
        if not (isinstance(backbone, DenseBackbone) and isinstance(neck, BandedFPN)
                and neck.start_level == 0 and can_stream(backbone.pyramid, inputs)):
            return super().extract_feat(inputs)
        maps = backbone.pyramid.forward_streamed(list(backbone.forward_trunk(inputs)),
                                                 defer_finest=True)
        maps = list(maps)  # the banded FPN releases them as it goes
        if isinstance(maps[0], RowSource) and not neck.bands_apply(maps):
            maps[0] = maps[0].full()
        return neck(maps)
