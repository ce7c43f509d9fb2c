# Mask R-CNN with an XCiT-T12/16 backbone (drop path as in the release).
_base_ = './mask-rcnn_xcit-s12-p8_fpn.py'

model = dict(
    backbone=dict(
        arch='tiny_12',
        patch_size=16,
        drop_path_rate=0.0),
    neck=dict(in_channels=[192, 192, 192, 192]))
