# Mask R-CNN with an XCiT-S24/16 backbone (drop path as in the release).
_base_ = './mask-rcnn_xcit-s12-p8_fpn.py'

model = dict(
    backbone=dict(
        arch='small_24',
        patch_size=16,
        drop_path_rate=0.1),
    neck=dict(in_channels=[384, 384, 384, 384]))
