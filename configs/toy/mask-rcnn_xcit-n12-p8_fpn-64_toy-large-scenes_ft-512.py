# A remedy for the demo detector on large scenes: fine-tune it (from `make demo`'s checkpoint)
# on 512 px crops of generated large scenes, so that it sees dense scenes, shapes cut by image
# borders and pieces of large shapes, at 3.2x the side of its 160 px training images. Data:
#   python tools/make_toy_data.py large-scenes data/large_scenes_train --num-val 8 \
#       --size 1024 --seed 1
# Test as the large-scene config (whole, sliced or downscaled; see benchmark_slicing.py).
_base_ = ['./mask-rcnn_xcit-n12-p8_fpn-64_toy-large-scenes.py']

load_from = 'work_dirs/demo_det/epoch_12.pth'
train_pipeline = [
    dict(type='LoadImageChecked'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='RandomCrop', crop_size=(512, 512)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    batch_size=2,
    dataset=dict(data_root='data/large_scenes_train/', ann_file='annotations/instances.json',
                 data_prefix=dict(img='images/'), pipeline=train_pipeline))
max_epochs = 30  # 8 scenes: 120 iterations of 2 crops
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs + 1)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10)]
default_hooks = dict(checkpoint=dict(interval=max_epochs),
                     logger=dict(type='LoggerHook', interval=10))
optim_wrapper = dict(optimizer=dict(lr=5e-4))
