"""mmseg's ``EncoderDecoder``, ``FPN`` and ``FPNHead`` with the inference of large images in
bands of rows.

Registered under mmseg's own names (by :mod:`xcit_dense.registry`), so every segmentation
config gets them without a change. ``FPN`` and ``FPNHead`` differ from mmseg's only in CPU
inference of maps over ``banded_pixels`` pixels, computed band by band with the same arithmetic
(:mod:`xcit_dense.models.bands`): the FPN's finest level, and the decoder's sum of its scale
heads at stride 4 (each coarser head runs at its own stride, only its last 2x bilinear
upsampling runs per band) with the class logits, so none of its 128-channel stride-4 maps exists
in full. ``EncoderDecoder``'s inference with an XCiT or CrossViT backbone differs from mmseg's
only where the result is a label map of more than ``banded_pixels`` pixels (1 MP), in 'whole'
mode, with a decoder that keeps mmseg's ``predict``: the decoder's low-resolution logits go through
:func:`~xcit_dense.models.label_map.banded_label_map` (the same resize, crop, flip and arg-max
as mmseg's ``predict_by_feat`` and ``postprocess_result``), so no C x H x W logit map is held
at full resolution. Such data samples carry ``pred_sem_seg`` only: the full-resolution
``seg_logits`` mmseg also stores are what this path avoids.
"""
from typing import List, Optional

import torch
from mmengine.structures import PixelData
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.decode_heads import FPNHead as MMSegFPNHead
from mmseg.models.necks import FPN as MMSegFPN
from mmseg.models.segmentors import EncoderDecoder as MMSegEncoderDecoder
from mmseg.models.utils import Upsample

from .models import DenseBackbone
from .models.bands import BandedFPN, StreamedFeatures, halo, run_in_bands, use_bands
from .models.label_map import banded_label_map, chained_resize_rows


class EncoderDecoder(StreamedFeatures, MMSegEncoderDecoder):
    """mmseg's ``EncoderDecoder``; large label maps of a dense backbone's inference are
    computed band by band (see the module's description), and its features as
    :class:`~xcit_dense.models.bands.StreamedFeatures` computes them.

    Args:
        banded_pixels: Label maps over this many pixels (1 MP by default) take the band-wise
            path; None never (``tools/test.py --tta`` sets it: mmseg's ``SegTTAModel``
            averages the views' full-resolution ``seg_logits``).
        **kwargs: mmseg's ``EncoderDecoder`` arguments.
    """

    def __init__(self, *args, banded_pixels: Optional[int] = 2**20, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.banded_pixels = banded_pixels

    def uses_banded_labels(self, data_samples: Optional[list]) -> bool:
        """Whether :meth:`predict` computes these samples' label maps band by band."""
        head = self.decode_head
        return (data_samples is not None and self.banded_pixels is not None
                and not self.training and not torch.is_grad_enabled()
                and isinstance(self.backbone, DenseBackbone)
                and self.test_cfg.get('mode', 'whole') == 'whole' and head.out_channels > 1
                and type(head).predict is BaseDecodeHead.predict
                and type(head).predict_by_feat is BaseDecodeHead.predict_by_feat
                and max(s.ori_shape[0] * s.ori_shape[1] for s in data_samples)
                > self.banded_pixels)

    def predict(self, inputs: torch.Tensor, data_samples: Optional[list] = None) -> List:
        if not self.uses_banded_labels(data_samples):
            return super().predict(inputs, data_samples)
        metas = [sample.metainfo for sample in data_samples]
        logits = self.decode_head.forward(self.extract_feat(inputs))
        # mmseg resizes every image's logits to the first image's padded shape
        padded = metas[0].get('pad_shape', metas[0]['img_shape'])[:2]
        for sample, meta, image_logits in zip(data_samples, metas, logits):
            padding = meta.get('img_padding_size', meta.get('padding_size', [0] * 4))
            flip = meta.get('flip_direction') if meta.get('flip') else None
            labels = banded_label_map(image_logits, padded, padding, flip,
                                      meta['ori_shape'][:2], self.decode_head.align_corners)
            sample.set_data({'pred_sem_seg': PixelData(data=labels)})
        return data_samples


class FPN(BandedFPN, MMSegFPN):
    """mmseg's ``FPN``; its finest level runs in bands in CPU inference of large maps."""


class FPNHead(MMSegFPNHead):
    """mmseg's ``FPNHead`` (Semantic FPN's decoder); its stride-4 maps and logits are computed
    band by band in CPU inference of large maps (see the module's description)."""

    #: Stride-4 maps over this many pixels run in bands.
    banded_pixels: int = 2**18

    def bands_apply(self, x: List[torch.Tensor]) -> bool:
        if halo(self.scale_heads[0]) is None or not use_bands(self, x[0], self.banded_pixels):
            return False
        for head in self.scale_heads[1:]:
            last = head[-1] if len(head) else None
            if not (isinstance(last, Upsample) and last.size is None
                    and last.mode == 'bilinear'):
                return False
        return True

    def forward(self, inputs) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        if not self.bands_apply(x):
            return super().forward(inputs)
        B, _, H, W = x[0].shape
        # each coarser head up to its last upsampling, at its own stride; then, per band, that
        # upsampling and mmseg's resize to the stride-4 map's size
        coarse, steps = [], []
        for head, feature in zip(self.scale_heads[1:], x[1:]):
            c = head[:-1](feature)
            up = head[-1]
            coarse.append(c)
            steps.append([(tuple(int(t * up.scale_factor) for t in c.shape[2:]),
                           up.align_corners), ((H, W), self.align_corners)])
        logits = x[0].new_empty(B, self.out_channels, H, W)

        def add_coarse(out: torch.Tensor, r0: int, r1: int) -> tuple:
            for c, chain in zip(coarse, steps):  # in mmseg's order
                out = out + chained_resize_rows(c, chain, r0, r1)
            return (self.cls_seg(out),)
        run_in_bands(self.scale_heads[0], lambda a, b: x[0][:, :, a:b], H, [logits],
                     add_coarse)
        return logits


STREAMED_MODULES = (EncoderDecoder, FPN, FPNHead)
