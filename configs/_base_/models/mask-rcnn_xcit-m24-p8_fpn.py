# Mask R-CNN with an XCiT-M24/8 backbone (drop path as in the release).
_base_ = './mask-rcnn_xcit-s12-p8_fpn.py'

model = dict(
    backbone=dict(
        arch='medium_24',
        patch_size=8,
        drop_path_rate=0.15),
    neck=dict(in_channels=[512, 512, 512, 512]))
