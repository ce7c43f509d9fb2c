# Mask R-CNN, XCiT-S12/8, FPN, multi-scale crop, 1x (12 epochs), COCO.
_base_ = [
    '../_base_/models/mask-rcnn_xcit-s12-p8_fpn.py',
    '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/default_runtime.py',
]
