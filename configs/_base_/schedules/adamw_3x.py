# The XCiT release's 3x schedule: 36 epochs, LR x0.1 at epochs 27 and 33 after a 500-iteration
# linear warm-up; AdamW lr 1e-4 (16 images per batch), weight decay 0.05 except on norms, XCA
# temperatures, LayerScale gammas and the positional encoding.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1),
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            '.temperature': dict(decay_mult=0.),
            '.gamma': dict(decay_mult=0.),
            'backbone.pos_embed': dict(decay_mult=0.),
        }))
