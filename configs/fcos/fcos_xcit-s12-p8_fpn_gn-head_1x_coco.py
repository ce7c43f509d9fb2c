# FCOS with an XCiT-S12/8 backbone. mmdet's FCOS config normalises Caffe-style (BGR, std 1);
# XCiT was pretrained on RGB ImageNet statistics, so the data preprocessor changes too.
# (mmdet's FCOS file has its own schedule, so AdamW is set here rather than inherited.)
_base_ = ['mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', '../_base_/models/xcit-s12-p8.py',
          '../_base_/default_runtime.py']

model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone={{_base_.xcit_backbone}},
    neck=dict(in_channels=[384, 384, 384, 384]))

optim_wrapper = dict(
    _delete_=True, type='OptimWrapper', constructor='NoDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
