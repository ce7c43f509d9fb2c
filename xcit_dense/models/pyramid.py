"""Pyramid adapters: turn transformer maps of one stride (:class:`SimplePyramid`, XCiT) or of
a few (:class:`BranchPyramid`, CrossViT's branches) into maps at the strides a neck wants.

A pyramid has up to four levels, at :data:`PYRAMID_STRIDES`; a backbone may return only some
(``out_strides``: three for DETR-style or RTMDet necks, one for a single-map head), and only
those are built and computed. Each level keeps its index among the four as its module name
(``pyramid.0`` ... ``pyramid.3``), so checkpoints of the full pyramid load into any subset.
"""
import math
from typing import Dict, Iterator, List, Sequence, Tuple

import torch
import torch.nn as nn

from .norm import build_norm_layer
from .streaming import StreamedPyramid, can_stream

PYRAMID_STRIDES = (4, 8, 16, 32)


def check_out_strides(out_strides: Sequence[int]) -> Tuple[int, ...]:
    """``out_strides`` as a tuple, if it is an ascending selection of :data:`PYRAMID_STRIDES`
    (a ``ValueError`` naming the valid strides otherwise)."""
    strides = tuple(int(s) for s in out_strides)
    if not strides or list(strides) != sorted(set(strides)) or not set(strides) <= set(
            PYRAMID_STRIDES):
        raise ValueError(f'out_strides must be ascending strides among {PYRAMID_STRIDES} '
                         f'(e.g. (8, 16, 32) for DETR-style necks, (16,) for one map), got '
                         f'{tuple(out_strides)}')
    return strides


class PyramidLevels(StreamedPyramid, nn.Module):
    """A pyramid's level modules, one per stride of ``out_strides``, each named by its level's
    index among :data:`PYRAMID_STRIDES`; iterating yields the modules. CPU inference of large
    maps runs level by level in bands of rows
    (:class:`~xcit_dense.models.streaming.StreamedPyramid`)."""

    def __init__(self, out_strides: Sequence[int], levels: List[nn.Module]) -> None:
        super().__init__()
        self.out_strides: Tuple[int, ...] = check_out_strides(out_strides)
        for stride, level in zip(self.out_strides, levels):
            self.add_module(str(PYRAMID_STRIDES.index(stride)), level)

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self._modules.values())

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, level: int) -> nn.Module:
        """The module of level ``level`` (its index among :data:`PYRAMID_STRIDES`)."""
        return self._modules[str(level)]

    def forward(self, features: List[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        """One map per level, from the input map :meth:`level_sources` names. Given a list,
        the streamed path releases its maps as they are used up."""
        if len(features) <= max(self.level_sources()):
            raise ValueError(f'{type(self).__name__} expects {max(self.level_sources()) + 1} '
                             f'maps, got {len(features)}')
        if (max(x.shape[2] * x.shape[3] for x in features) > self.BAND_TOKENS
                and can_stream(self, features[0])):
            return self.forward_streamed(
                features if isinstance(features, list) else list(features))
        sources = self.level_sources()
        return tuple(level(features[i]) for level, i in zip(self, sources))


def _resample(channels: int, in_stride: int, out_stride: int, norm_cfg: Dict) -> nn.Module:
    """One pyramid level: resample a map from ``in_stride`` to ``out_stride``.

    Upsampling uses 2x2 transposed convolutions (x4 = deconv-norm-GELU-deconv), downsampling
    max-pooling, as in the XCiT release and ViTDet. ``ceil_mode`` keeps an output of
    ``ceil(H / out_stride)`` rows when the token grid is odd.
    """
    if out_stride == in_stride:
        return nn.Identity()
    if out_stride > in_stride:
        factor = out_stride // in_stride
        if factor * in_stride != out_stride:
            raise ValueError(f'Cannot pool stride {in_stride} to stride {out_stride}')
        return nn.Sequential(nn.MaxPool2d(kernel_size=factor, stride=factor, ceil_mode=True))
    factor = in_stride // out_stride
    if factor == 2:
        return nn.Sequential(nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2))
    if factor == 4:
        return nn.Sequential(
            nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
            build_norm_layer(norm_cfg, channels),
            nn.GELU(),
            nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
        )
    raise ValueError(f'Cannot upsample stride {in_stride} to stride {out_stride}')


class SimplePyramid(PyramidLevels):
    """Resample N maps of one stride into maps of strides ``out_strides`` (one map each).

    For XCiT with patch size 8 this is (ConvTranspose x2, identity, max-pool 2, max-pool 4);
    with patch size 16 (ConvTranspose-norm-GELU-ConvTranspose, ConvTranspose, identity,
    max-pool 2). Level names match the release's ``fpn1..fpn4`` Sequentials, so its dense
    checkpoints load into ``pyramid.{0..3}``.
    """

    def __init__(self, channels: int, in_stride: int,
                 out_strides: Sequence[int] = PYRAMID_STRIDES,
                 norm_cfg: Dict = dict(type='BN')) -> None:
        super().__init__(out_strides, [_resample(channels, in_stride, s, norm_cfg)
                                       for s in out_strides])

    def level_sources(self) -> Tuple[int, ...]:
        return tuple(range(len(self)))

    def forward(self, features: List[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        if len(features) != len(self):
            raise ValueError(f'SimplePyramid expects {len(self)} maps, got {len(features)}')
        return super().forward(features)


def _pyramid_level(channels: int, in_stride: int, out_stride: int,
                   norm_cfg: Dict) -> nn.Sequential:
    """Resample a map from ``in_stride`` to ``out_stride``, then normalise it.

    With g = gcd(in_stride, out_stride): a transposed convolution upsamples by in_stride / g
    (kernel = stride, as in the XCiT release's adapters), then max-pooling downsamples by
    out_stride / g. 8 -> 4: deconv x2; 16 -> 32: max-pool 2; 12 -> 4: deconv x3;
    12 -> 8: deconv x3, max-pool 2.
    """
    g = math.gcd(in_stride, out_stride)
    up, down = in_stride // g, out_stride // g
    layers: List[nn.Module] = []
    if up > 1:
        layers.append(nn.ConvTranspose2d(channels, channels, kernel_size=up, stride=up))
    if down > 1:
        layers.append(nn.MaxPool2d(kernel_size=down, stride=down, ceil_mode=True))
    layers.append(build_norm_layer(norm_cfg, channels))
    return nn.Sequential(*layers)


class BranchPyramid(PyramidLevels):
    """Turn the maps of several branches (one stride each) into one map per output stride.

    Each output stride is fed by the coarsest branch whose stride is not above it (the
    finest branch where none is): for CrossViT at strides (8, 16) levels 4 and 8 come from
    the small-patch branch and 16 and 32 from the large-patch one. Each level is resampled
    by :func:`_pyramid_level` and normalised.
    """

    def __init__(self, channels: Sequence[int], strides: Sequence[int],
                 out_strides: Sequence[int] = PYRAMID_STRIDES,
                 norm_cfg: Dict = dict(type='BN')) -> None:
        sources = []
        for s in out_strides:
            finer = [i for i, t in enumerate(strides) if t <= s]
            sources.append(max(finer, key=lambda i: strides[i]) if finer
                           else min(range(len(strides)), key=lambda i: strides[i]))
        super().__init__(out_strides, [_pyramid_level(channels[i], strides[i], s, norm_cfg)
                                       for i, s in zip(sources, out_strides)])
        self.sources: Tuple[int, ...] = tuple(sources)
        self.out_channels: Tuple[int, ...] = tuple(channels[i] for i in sources)

    def level_sources(self) -> Tuple[int, ...]:
        return self.sources
