"""Pyramid adapters: turn single-stride transformer maps into a 4-level feature pyramid."""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn

from .norm import build_norm_layer


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


class SimplePyramid(nn.ModuleList):
    """Resample N maps of one stride into maps of strides ``out_strides`` (one map each).

    For XCiT with patch size 8 this is (ConvTranspose x2, identity, max-pool 2, max-pool 4);
    with patch size 16 (ConvTranspose-norm-GELU-ConvTranspose, ConvTranspose, identity,
    max-pool 2). Module indices match the release's ``fpn1..fpn4`` Sequentials, so its dense
    checkpoints load into ``pyramid.{0..3}``.
    """

    def __init__(self, channels: int, in_stride: int,
                 out_strides: Sequence[int] = (4, 8, 16, 32),
                 norm_cfg: Dict = dict(type='BN')) -> None:
        super().__init__([_resample(channels, in_stride, s, norm_cfg) for s in out_strides])
        self.out_strides: Tuple[int, ...] = tuple(out_strides)

    def forward(self, features: List[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        if len(features) != len(self):
            raise ValueError(f'SimplePyramid expects {len(self)} maps, got {len(features)}')
        return tuple(op(x) for op, x in zip(self, features))
