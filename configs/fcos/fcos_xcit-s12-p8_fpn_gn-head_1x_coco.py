# FCOS with an XCiT-S12/8 backbone. mmdet's FCOS config normalises Caffe-style (BGR, std 1);
# XCiT was pretrained on RGB ImageNet statistics, so the data preprocessor changes too.
# (One base only: mmdet's FCOS file has its own schedule, so AdamW is set here.)
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
custom_imports = dict(imports=['xcit_dense'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='XCiT',
        arch='small_12',
        patch_size=8,
        drop_path_rate=0.05,
        norm_cfg=dict(type='SyncBN'),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://dl.fbaipublicfiles.com/xcit/xcit_small_12_p8_224.pth')),
    neck=dict(in_channels=[384, 384, 384, 384]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., custom_keys={
        '.temperature': dict(decay_mult=0.), '.gamma': dict(decay_mult=0.),
        'backbone.pos_embed': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
