# Mask R-CNN, CrossViT-9†, FPN, multi-scale crop, 3x (36 epochs), COCO.
_base_ = './mask-rcnn_crossvit-18-dagger_fpn_ms-crop-3x_coco.py'
model = dict(backbone=dict(arch='9_dagger'), neck=dict(in_channels=[128, 128, 256, 256]))
