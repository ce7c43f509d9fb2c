# Mask R-CNN, XCiT-S24/8, FPN, multi-scale crop, 3x (36 epochs), COCO.
_base_ = './mask-rcnn_xcit-s12-p8_fpn_ms-crop-3x_coco.py'
model = dict(backbone=dict(arch='small_24', patch_size=8), neck=dict(in_channels=[384] * 4))
