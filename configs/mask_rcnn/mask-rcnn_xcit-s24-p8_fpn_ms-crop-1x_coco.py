# Mask R-CNN, XCiT-S24/8, FPN, multi-scale crop, 1x (12 epochs), COCO.
_base_ = './mask-rcnn_xcit-s12-p8_fpn_ms-crop-1x_coco.py'
model = dict(backbone=dict(arch='small_24', patch_size=8), neck=dict(in_channels=[384] * 4))
