"""mmdet's test-time augmentation model extended to instance masks. Registered in mmdet's
``MODELS`` by :mod:`xcit_dense.registry`; ``tools/test.py --tta`` puts it in place of the
config's ``DetTTAModel`` (:func:`~xcit_dense.engine.tta.apply_tta`)."""
import torch
from mmcv.ops import batched_nms
from mmdet.models.test_time_augs import DetTTAModel
from mmengine.structures import InstanceData

# The dimensions a flipped view's masks are flipped back along, by ``flip_direction``.
FLIP_DIMS = {'horizontal': (-1,), 'vertical': (-2,), 'diagonal': (-2, -1)}


class DetTTAModelWithMasks(DetTTAModel):
    """mmdet's ``DetTTAModel`` extended to instance masks (ours: mmdet 3.3's merges boxes only
    and asserts that the predictions carry no masks).

    Each view's masks (already pasted at the original image size by the detector) are flipped
    back with their view, the boxes of all views go through the same class-wise NMS as mmdet's,
    and every kept box keeps the mask that its own view predicted (mmdet 2.x instead re-ran
    the mask head on the merged boxes and averaged the views' mask probabilities). Predictions
    without masks are merged by ``DetTTAModel`` unchanged."""

    def _merge_single_sample(self, data_samples):
        if data_samples[0].pred_instances.get('masks', None) is None:
            return super()._merge_single_sample(data_samples)
        preds = [s.pred_instances for s in data_samples]
        masks = [p.masks.flip(FLIP_DIMS[s.flip_direction]) if s.metainfo.get('flip')
                 else p.masks for p, s in zip(preds, data_samples)]
        bboxes, scores = self.merge_aug_bboxes([p.bboxes for p in preds],
                                               [p.scores for p in preds],
                                               [s.metainfo for s in data_samples])
        if bboxes.numel() == 0:
            return data_samples[0]
        labels = torch.cat([p.labels for p in preds])
        dets, keep = batched_nms(bboxes, scores, labels, self.tta_cfg.nms)
        dets, keep = dets[:self.tta_cfg.max_per_img], keep[:self.tta_cfg.max_per_img]
        merged = data_samples[0]
        merged.pred_instances = InstanceData(bboxes=dets[:, :-1], scores=dets[:, -1],
                                             labels=labels[keep], masks=torch.cat(masks)[keep])
        return merged
