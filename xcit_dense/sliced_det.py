"""Sliced detection: a detector run on overlapping slices of each image at its own resolution,
the slices' instances merged in the image's coordinates (SAHI's way, which mmdet's
``demo/large_image_demo.py`` follows).

:class:`SlicedDetector` wraps any mmdet detector (``tools/test.py`` and ``tools/infer.py``
``--slice``, :func:`~xcit_dense.engine.slicing.set_test_slicing`). Slices lie as SAHI lays them
(:func:`~xcit_dense.slice_grid.slice_windows`). The merge is SAHI's greedy non-maximum merging
(``sahi.postprocess.combine.batched_greedy_nmm``, per class, intersection over the smaller box
0.5 by default, SAHI's defaults): every instance that a higher-scored one of its class matches
is merged into it (box union, mask union, the higher score), so the pieces of an object that a
slice border cuts become one instance. ``merge='nms'`` keeps the highest-scored instance of
each matched group instead (as mmdet's ``merge_results_by_nms`` does; that function is not
called because it leaves the masks in their slices' coordinates: it checks for ``'masks'`` in
the data sample instead of its instances).

Optionally (``whole_scale``, SAHI's ``perform_standard_pred``) the image also runs once whole,
resized as the config's test pipeline resizes it, and its instances join the merge.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmengine.model import BaseTTAModel
from mmengine.structures import InstanceData

from .slice_grid import Window, slice_windows

MERGES = ('nmm', 'nms')


def merge_groups(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                 merge: str = 'nmm', threshold: float = 0.5) -> Dict[int, List[int]]:
    """Which instances merge: each kept index (highest score first) with the indices merged
    into it, per class. 'nmm': SAHI's greedy non-maximum merging by intersection over the
    smaller box; 'nms': mmcv's batched NMS by IoU (the suppressed are not merged)."""
    if len(boxes) == 0:
        return {}
    if merge == 'nms':
        from mmcv.ops import batched_nms
        _, keep = batched_nms(boxes.float(), scores.float(), labels,
                              dict(type='nms', iou_threshold=threshold))
        return {int(k): [] for k in keep}
    from sahi.postprocess.combine import batched_greedy_nmm
    table = torch.cat([boxes.float(), scores.float()[:, None], labels.float()[:, None]], 1)
    groups = batched_greedy_nmm(table.numpy(), match_metric='IOS', match_threshold=threshold)
    return {int(k): [int(i) for i in v]
            for k, v in sorted(groups.items(), key=lambda kv: -float(scores[kv[0]]))}


class BoxMasks(list):
    """Instance masks cut to their boxes: one ``(x, y, mask)`` per instance, the mask's
    top-left pixel at (x, y) of its image. A slice's hundreds of low-score instances then cost
    their boxes' pixels, not the slice's each."""

    @classmethod
    def from_bitmaps(cls, masks: torch.Tensor, boxes: torch.Tensor) -> 'BoxMasks':
        """Full bitmaps (N x H x W) cut to their boxes ``[x1, y1, x2, y2]`` widened by a pixel
        (mmdet pastes each mask into its box widened so, nothing outside it)."""
        height, width = masks.shape[-2:]
        out = cls()
        for mask, (x1, y1, x2, y2) in zip(masks.bool().cpu(), boxes.tolist()):
            x1, y1 = max(math.floor(x1) - 1, 0), max(math.floor(y1) - 1, 0)
            x2, y2 = min(math.ceil(x2) + 1, width), min(math.ceil(y2) + 1, height)
            out.append((x1, y1, mask[y1:max(y2, y1), x1:max(x2, x1)].clone()))
        return out


def merge_slices(pieces: Sequence[Tuple[Window, InstanceData]], height: int, width: int,
                 merge: str = 'nmm', threshold: float = 0.5,
                 max_per_img: Optional[int] = None) -> InstanceData:
    """Instances of the slices (each with its window; boxes and masks in the slice's
    coordinates, masks as bitmaps of the slice or :class:`BoxMasks`) as instances of the
    ``height`` x ``width`` image, merged by :func:`merge_groups`: boxes are the union of each
    group's boxes, masks the union of its masks (full-image bitmaps, as mmdet's detectors
    return them), scores the highest; the ``max_per_img`` best-scored are kept (the detector's
    own cap per image, which bounds the bitmaps' memory)."""
    boxes, scores, labels, sources = [], [], [], []
    with_masks = any('masks' in inst for _, inst in pieces)
    for p, ((x1, y1, _, _), inst) in enumerate(pieces):
        inst = inst.cpu()
        boxes.append(inst.bboxes.float() + inst.bboxes.new_tensor([x1, y1, x1, y1]).float())
        scores.append(inst.scores.float())
        labels.append(inst.labels.long())
        sources += [(p, i) for i in range(len(inst))]
    boxes = torch.cat(boxes) if boxes else torch.zeros(0, 4)
    scores = torch.cat(scores) if scores else torch.zeros(0)
    labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    groups = merge_groups(boxes, scores, labels, merge, threshold)
    kept = list(groups)[:max_per_img]
    merged = InstanceData()
    merged.bboxes = torch.stack([
        torch.cat([boxes[[k, *groups[k]], :2].min(0).values,
                   boxes[[k, *groups[k]], 2:].max(0).values]) for k in kept]) \
        if kept else boxes.new_zeros(0, 4)
    merged.scores = scores[kept]
    merged.labels = labels[kept]
    if with_masks:
        masks = torch.zeros(len(kept), height, width, dtype=torch.bool)
        for row, k in enumerate(kept):
            for index in (k, *groups[k]):
                p, i = sources[index]
                (ox, oy, _, _), inst = pieces[p]
                x, y, mask = inst.masks[i] if isinstance(inst.masks, list) else \
                    (0, 0, inst.masks[i])
                h, w = mask.shape
                masks[row, oy + y:oy + y + h, ox + x:ox + x + w] |= mask.cpu().bool()
        merged.masks = masks
    return merged


class SlicedDetector(BaseTTAModel):
    """A detector (``module``) run on slices of ``slice_size`` pixels overlapping by
    ``overlap`` of it, each at its own resolution, and its instances merged (see the module's
    description). The images it is given must be at their own resolution (the test
    pipeline's resize is replaced by :func:`~xcit_dense.engine.slicing.set_test_slicing`).

    A :class:`~mmengine.model.BaseTTAModel`, as mmdet's ``DetTTAModel`` is: the detector's
    weights live under ``module.``, and the tools load a plain detector's checkpoint into it.

    Args:
        module: The detector (config or module).
        slice_size: The side of the square slices in pixels.
        overlap: The fraction of a slice that neighbouring slices share.
        merge: 'nmm' (SAHI's greedy merging by intersection over the smaller box) or 'nms'.
        match_threshold: The overlap at which two instances of a class are merged.
        slices_per_batch: Slices per forward pass of the detector.
        whole_scale: If given, ``(long, short)`` sides the image is also resized to (keeping
            its aspect ratio) for one whole-image pass whose instances join the merge.
        max_per_img: Keep this many merged instances per image, the best-scored (the
            detector's own ``max_per_img``: :func:`~xcit_dense.engine.slicing.
            set_test_slicing` passes it); None keeps all.
    """

    def __init__(self, module, slice_size: int, overlap: float = 0.2, merge: str = 'nmm',
                 match_threshold: float = 0.5, slices_per_batch: int = 4,
                 whole_scale: Optional[Sequence[int]] = None,
                 max_per_img: Optional[int] = None, data_preprocessor=None):
        super().__init__(module=module, data_preprocessor=data_preprocessor)
        if merge not in MERGES:
            raise ValueError(f"merge is one of {', '.join(MERGES)}, got {merge!r}")
        self.slice_size, self.overlap = int(slice_size), float(overlap)
        self.merge, self.match_threshold = merge, float(match_threshold)
        self.slices_per_batch = int(slices_per_batch)
        self.whole_scale = tuple(whole_scale) if whole_scale else None
        self.max_per_img = max_per_img

    def test_step(self, data: dict) -> List[DetDataSample]:
        """Predict each image of a batch of the test pipeline's data (uint8 images at their own
        resolution) slice by slice; returns its data samples with ``pred_instances``."""
        per_image = [self.slice_predictions(image, sample)
                     for image, sample in zip(data['inputs'], data['data_samples'])]
        merged = self.merge_preds(per_image)
        for sample, instances in zip(data['data_samples'], merged):
            sample.pred_instances = instances
        return list(data['data_samples'])

    def slice_predictions(self, image: torch.Tensor, sample: DetDataSample
                          ) -> List[DetDataSample]:
        """The detector's predictions on each slice of ``image`` (C x H x W), each data sample
        carrying its ``slice_window`` and the image's ``sliced_image_shape``."""
        height, width = image.shape[-2:]
        scale = np.asarray(sample.metainfo.get('scale_factor', (1., 1.)), dtype=float)
        if not np.allclose(scale, 1):
            raise ValueError(f'SlicedDetector predicts images at their own resolution, but '
                             f'this one was resized by {tuple(scale)}: remove the resize from '
                             'the test pipeline (xcit_dense.engine.slicing.set_test_slicing)')
        windows = slice_windows(height, width, self.slice_size, self.overlap)
        meta = dict(img_id=sample.metainfo.get('img_id'),
                    img_path=sample.metainfo.get('img_path'),
                    sliced_image_shape=(height, width))
        views = [(image[:, y1:y2, x1:x2], DetDataSample(metainfo=dict(
            meta, ori_shape=(y2 - y1, x2 - x1), img_shape=(y2 - y1, x2 - x1),
            scale_factor=(1., 1.), slice_window=(x1, y1, x2, y2))))
            for x1, y1, x2, y2 in windows]
        if self.whole_scale is not None:
            views.append(self._whole_view(image, meta))
        predictions = []
        for start in range(0, len(views), self.slices_per_batch):
            batch = views[start:start + self.slices_per_batch]
            for prediction in self.module.test_step(dict(inputs=[v[0] for v in batch],
                                                         data_samples=[v[1] for v in batch])):
                instances = prediction.pred_instances
                if 'masks' in instances:  # full slice bitmaps, hundreds per slice
                    instances.masks = BoxMasks.from_bitmaps(instances.masks, instances.bboxes)
                predictions.append(prediction)
        return predictions

    def _whole_view(self, image: torch.Tensor, meta: dict) -> Tuple[torch.Tensor, DetDataSample]:
        """The whole image resized to ``whole_scale``; the detector maps its instances back to
        the image's size (its ``ori_shape``), so its window is the whole image."""
        import mmcv
        height, width = image.shape[-2:]
        resized, factor = mmcv.imrescale(image.permute(1, 2, 0).numpy(), self.whole_scale,
                                         return_scale=True)
        h, w = resized.shape[:2]
        return torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1), DetDataSample(
            metainfo=dict(meta, ori_shape=(height, width), img_shape=(h, w),
                          scale_factor=(w / width, h / height),
                          slice_window=(0, 0, width, height)))

    def merge_preds(self, data_samples_list: List[List[DetDataSample]]) -> List[InstanceData]:
        """Each image's slice predictions (:meth:`slice_predictions`) merged into instances in
        the image's coordinates (:func:`merge_slices`)."""
        merged = []
        for predictions in data_samples_list:
            height, width = predictions[0].metainfo['sliced_image_shape']
            pieces = [(tuple(p.metainfo['slice_window']), p.pred_instances)
                      for p in predictions]
            merged.append(merge_slices(pieces, height, width, self.merge,
                                       self.match_threshold, self.max_per_img))
        return merged
