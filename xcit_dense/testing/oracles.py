"""Models that predict the ground truth (or nothing right), for testing the slicing, its merge
and the slicing benchmark through the tools: whatever they lose, the tools lost.

Registered into mmdet's and mmseg's registries on import (``custom_imports=dict(imports=
['xcit_dense', 'xcit_dense.testing.oracles'])``). Each has one parameter, so that a checkpoint
of it can be written and loaded strictly as any other.
"""
from functools import lru_cache
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS as DET_MODELS
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.model import BaseModel
from mmengine.structures import InstanceData
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS as SEG_MODELS


@lru_cache(maxsize=4)
def _coco(ann_file: str):
    from pycocotools.coco import COCO
    return COCO(ann_file)


@DET_MODELS.register_module()
class GroundTruthDetector(BaseModel):
    """Predicts the objects of ``ann_file`` (COCO) in each image, clipped to the image's
    ``slice_window`` when it is a slice (:class:`~xcit_dense.sliced_det.SlicedDetector`), each
    scored by the fraction of its pixels in view (as a detector is surer of a whole object than
    of a piece); with ``empty`` it predicts nothing."""

    def __init__(self, ann_file: str, empty: bool = False, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.ann_file, self.empty = ann_file, empty
        self.unit = torch.nn.Parameter(torch.ones(1))

    def forward(self, inputs, data_samples=None, mode: str = 'predict'):
        raise NotImplementedError('GroundTruthDetector only predicts (test_step)')

    def test_step(self, data: dict) -> List[DetDataSample]:
        for sample in data['data_samples']:
            sample.pred_instances = self.objects(sample.metainfo)
        return list(data['data_samples'])

    def objects(self, meta: dict) -> InstanceData:
        """The image's objects in the coordinates of the view the sample describes."""
        coco = _coco(self.ann_file)
        anns = [] if self.empty else coco.loadAnns(coco.getAnnIds(imgIds=[meta['img_id']]))
        info = coco.imgs[meta['img_id']]
        x0, y0, x1, y1 = meta.get('slice_window', (0, 0, info['width'], info['height']))
        boxes, labels, masks, scores = [], [], [], []
        for ann in anns:
            bx, by, bw, bh = ann['bbox']
            box = [max(bx, x0), max(by, y0), min(bx + bw, x1), min(by + bh, y1)]
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            full = coco.annToMask(ann)
            mask = full[y0:y1, x0:x1].astype(bool)
            if not mask.any():
                continue
            scores.append(mask.sum() / full.sum())
            boxes.append([box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0])
            labels.append(ann['category_id'] - 1)
            masks.append(mask)
        instances = InstanceData()
        instances.bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        instances.scores = torch.tensor(scores, dtype=torch.float32)
        instances.labels = torch.tensor(labels, dtype=torch.long)
        instances.masks = torch.from_numpy(np.stack(masks)) if masks else \
            torch.zeros(0, y1 - y0, x1 - x0, dtype=torch.bool)
        return instances


@SEG_MODELS.register_module()
class GroundTruthSegmentor(EncoderDecoder):
    """mmseg's ``EncoderDecoder`` inference (whole or slide, its own code) around a "network"
    whose class scores are the one-hot ground truth of the view it is given, with each label
    moved ``shift`` classes on (``shift=1``: every pixel wrong). A slide crop is found in the
    image by its pixels, at the positions mmseg's slide inference takes."""

    def __init__(self, num_classes: int, shift: int = 0, test_cfg: Optional[dict] = None,
                 data_preprocessor=None):
        super(EncoderDecoder, self).__init__(data_preprocessor=data_preprocessor)
        self.num_classes = self.out_channels = num_classes
        self.shift, self.align_corners = shift, False
        self.test_cfg = ConfigDict(test_cfg or dict(mode='whole'))
        self.unit = torch.nn.Parameter(torch.ones(1))
        self._image = self._labels = None

    def predict(self, inputs: torch.Tensor, data_samples=None):
        meta = data_samples[0].metainfo
        gt = data_samples[0].gt_sem_seg.data[None].float()  # at the image's own size
        h, w = meta['img_shape'][:2]
        labels = F.interpolate(gt, size=(h, w), mode='nearest')[0, 0].long()
        labels = F.pad(labels, (0, inputs.shape[-1] - w, 0, inputs.shape[-2] - h), value=255)
        known = labels != 255
        labels[known] = (labels[known] + self.shift) % self.num_classes
        labels[~known] = 0
        self._image, self._labels = inputs, labels
        try:
            return super().predict(inputs, data_samples)
        finally:
            self._image = self._labels = None

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas) -> torch.Tensor:
        y, x = self._locate(inputs)
        labels = self._labels[y:y + inputs.shape[-2], x:x + inputs.shape[-1]]
        return F.one_hot(labels, self.num_classes).permute(2, 0, 1)[None].float()

    def _locate(self, crop: torch.Tensor):
        if crop.shape == self._image.shape:
            return 0, 0
        (sh, sw), (ch, cw) = self.test_cfg['stride'], self.test_cfg['crop_size']
        height, width = self._image.shape[-2:]
        for y in range(0, max(height - ch + sh - 1, 0) // sh + 1):
            for x in range(0, max(width - cw + sw - 1, 0) // sw + 1):
                y1, x1 = max(min(y * sh + ch, height) - ch, 0), max(min(x * sw + cw, width) - cw, 0)
                if torch.equal(self._image[..., y1:y1 + crop.shape[-2], x1:x1 + crop.shape[-1]],
                               crop):
                    return y1, x1
        raise AssertionError('the slide crop is not one of the image\'s windows')


def majority_miou(ade_root: str, num_classes: int) -> float:
    """The validation mIoU (in %) of the trivial segmentor that labels every pixel background,
    on data in the toy ADE20k layout (``generate_toy_ade``: label 0 ignored, 1 background,
    2.. the shapes), every class present: the background's share of the labelled pixels over
    the number of classes. A model that beats it has learnt more than the class prior."""
    import glob

    from PIL import Image
    paths = sorted(glob.glob(f'{ade_root}/annotations/validation/*.png'))
    labels = np.concatenate([np.asarray(Image.open(p)).ravel() for p in paths])
    known = labels[labels > 0]
    assert set(np.unique(known).tolist()) == set(range(1, num_classes + 1)), np.unique(known)
    return 100 * float((known == 1).mean()) / num_classes
