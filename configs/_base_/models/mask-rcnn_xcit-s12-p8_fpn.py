# Mask R-CNN with an XCiT-S12/8 backbone: mmdet's Mask R-CNN, FPN on four maps of the
# embedding width.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', './xcit-s12-p8.py']

model = dict(backbone={{_base_.xcit_backbone}}, neck=dict(in_channels=[384, 384, 384, 384]))
