# Semantic FPN with XCiT-N12/8 on the generated toy ADE20k-layout data
# (xcit_dense.datasets.generate_toy_ade): the CPU segmentation demo. FPN and head are shrunk
# to 64 channels for CPU speed.
_base_ = [
    '../_base_/models/fpn_xcit-s12-p8.py',
    '../_base_/schedules/adamw_poly-80k.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/default_runtime.py',
]

data_root = 'data/toy_ade'
metainfo = dict(classes=('background', 'circle', 'square', 'triangle'))
crop_size = (128, 128)
width = 64

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='nano_12', patch_size=8, drop_path_rate=0., norm_cfg=dict(type='BN'),
                  init_cfg=None),
    neck=dict(in_channels=[128, 128, 128, 128], out_channels=width),
    decode_head=dict(in_channels=[width] * 4, channels=width, num_classes=4,
                     norm_cfg=dict(type='BN', requires_grad=True)))

train_pipeline = [
    dict(type='LoadImageChecked'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageChecked'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# tools/test.py --tta: 3 scales x 2 flips, the views' class probabilities averaged by mmseg's
# SegTTAModel.
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='LoadImageChecked'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (0.75, 1.0, 1.25)],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ]),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
loader = dict(batch_size=8, num_workers=1, persistent_workers=True)
train_dataloader = dict(
    **loader, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(**dataset, pipeline=train_pipeline, data_prefix=dict(
        img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    **loader, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**dataset, pipeline=test_pipeline, data_prefix=dict(
        img_path='images/validation', seg_map_path='annotations/validation')))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 600
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=50, end=max_iters),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=200, max_keep_ckpts=2))
log_processor = dict(window_size=20)
randomness = dict(seed=0)
