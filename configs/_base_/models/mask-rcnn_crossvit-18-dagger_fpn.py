# Mask R-CNN with a CrossViT-18† backbone: mmdet's Mask R-CNN, FPN on the four maps (strides 4
# and 8 from the 224-wide small-patch branch, 16 and 32 from the 448-wide large-patch branch).
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', './crossvit-18-dagger.py']

model = dict(backbone={{_base_.crossvit_backbone}}, neck=dict(in_channels=[224, 224, 448, 448]))
