# Cascade Mask R-CNN with an XCiT-S12/8 backbone, the release's multi-scale crop 3x recipe.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/adamw_3x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/default_runtime.py',
    '../_base_/models/xcit-s12-p8.py',
]
model = dict(backbone={{_base_.xcit_backbone}}, neck=dict(in_channels=[384, 384, 384, 384]))
