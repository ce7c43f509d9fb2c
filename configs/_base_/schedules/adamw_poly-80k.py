# The XCiT release's segmentation schedule: AdamW lr 6e-5 (16 images per batch), weight decay
# 0.01 except on norms, XCA temperatures, LayerScale gammas and the positional encoding;
# 1500 iterations of linear warm-up, then poly decay (power 1.0) to 0 at 80k iterations.
_base_ = 'mmseg::_base_/schedules/schedule_80k.py'

max_iters = 80000
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            '.temperature': dict(decay_mult=0.),
            '.gamma': dict(decay_mult=0.),
            'backbone.pos_embed': dict(decay_mult=0.),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=max_iters),
]
train_cfg = dict(max_iters=max_iters)
