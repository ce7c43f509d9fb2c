"""mmdet's ``FPN``, ``RPNHead`` and the detectors that use them with the CPU inference of large
maps in bands of rows.

Registered under mmdet's own names (by :mod:`xcit_dense.registry`), so every detection config
gets them without a change; they differ from mmdet's only in CPU inference of maps over
``banded_pixels`` pixels, where the results are the same arithmetic computed band by band
(:mod:`xcit_dense.models.bands`): the FPN's finest level (:class:`~xcit_dense.models.bands.
BandedFPN`), reading the pyramid's stride-4 level band by band from an XCiT or CrossViT
backbone (:class:`~xcit_dense.models.bands.StreamedFeatures`, in the detectors below), and the
RPN's 3x3 convolution with its two 1x1 outputs, so the RPN's 256-channel hidden map of the
stride-4 level never exists in full.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from mmdet.models import detectors
from mmdet.models.dense_heads import RPNHead as MMDetRPNHead
from mmdet.models.necks import FPN as MMDetFPN

from .models.bands import BandedFPN, StreamedFeatures, halo, run_in_bands, use_bands

# The FPN detectors of the shipped configs and their usual relatives.
STREAMED_DETECTORS = ('MaskRCNN', 'FasterRCNN', 'CascadeRCNN', 'RetinaNet', 'FCOS')


class FPN(BandedFPN, MMDetFPN):
    """mmdet's ``FPN``; its finest level runs in bands in CPU inference of large maps."""


class RPNHead(MMDetRPNHead):
    """mmdet's ``RPNHead``; its convolutions run in bands in CPU inference of large maps."""

    #: Levels over this many pixels run in bands.
    banded_pixels: int = 2**18

    def forward_single(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if halo(self.rpn_conv) is None or not use_bands(self, x, self.banded_pixels):
            return super().forward_single(x)
        B, _, H, W = x.shape
        scores = x.new_empty(B, self.rpn_cls.out_channels, H, W)
        deltas = x.new_empty(B, self.rpn_reg.out_channels, H, W)

        def outputs(hidden: torch.Tensor, *rows) -> Tuple[torch.Tensor, torch.Tensor]:
            hidden = F.relu(hidden)
            return self.rpn_cls(hidden), self.rpn_reg(hidden)
        run_in_bands(self.rpn_conv, lambda a, b: x[:, :, a:b], H, [scores, deltas], outputs)
        return scores, deltas


def _streamed_detector(name: str) -> type:
    """mmdet's detector ``name`` with :class:`StreamedFeatures`' ``extract_feat``."""
    base = getattr(detectors, name)
    return type(name, (StreamedFeatures, base), dict(
        __module__=__name__, __doc__=f"mmdet's ``{name}``; its features as "
        ':class:`~xcit_dense.models.bands.StreamedFeatures` computes them.'))


STREAMED_MODULES = (FPN, RPNHead) + tuple(_streamed_detector(n) for n in STREAMED_DETECTORS)
