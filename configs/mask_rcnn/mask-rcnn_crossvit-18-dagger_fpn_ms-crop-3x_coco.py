# Mask R-CNN, CrossViT-18†, FPN, multi-scale crop, 3x (36 epochs), COCO: the XCiT recipe.
_base_ = [
    '../_base_/models/mask-rcnn_crossvit-18-dagger_fpn.py',
    '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/adamw_3x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/default_runtime.py',
]
