# The CPU demo of mask-rcnn_xcit-n12-p8_fpn-64_toy-shapes.py with CrossViT-Ti (small-patch
# branch at stride 8) in place of XCiT-N12/8: same data, heads, schedule and seed.
_base_ = './mask-rcnn_xcit-n12-p8_fpn-64_toy-shapes.py'

model = dict(
    backbone=dict(_delete_=True, type='CrossViT', arch='tiny', patch_strides=(8, 16),
                  drop_path_rate=0., norm_cfg=dict(type='BN'), init_cfg=None),
    neck=dict(in_channels=[96, 96, 192, 192]))
