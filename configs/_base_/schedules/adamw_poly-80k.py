# The XCiT release's segmentation schedule (semantic_segmentation/configs/xcit/*/*.py, mmcv
# 1.x): AdamW lr 6e-5 (8 GPUs x 2 images), betas (0.9, 0.999), weight decay 0.01, fp32, no
# gradient clipping; poly decay (power 1.0, to 0) over all 80k iterations from iteration 0,
# multiplied during the first 1500 iterations by a linear warm-up from 1e-6. So both schedulers
# below begin at 0 (mmengine multiplies overlapping schedulers, as mmcv's warm-up did). mmengine's
# schedulers reach their end value one iteration before `end`: the warm-up is full at iteration
# 1499 instead of 1500 and the LR is 0 at the last iteration, not after it.
# Where we differ, on purpose: weight decay. The release's paramwise_cfg exempts the parameters
# whose names contain 'norm', which in XCiT are only the blocks' LayerNorms (its other keys,
# 'absolute_pos_embed' and 'relative_position_bias_table', are Swin's and match nothing), so it
# decayed the BatchNorms (stem, LPI, the /16 pyramid, the heads' SyncBN), the XCA temperatures,
# the LayerScale gammas and the positional encoding, although its configs' comment says "no
# weight decay for position embedding & layer norm". We exempt all of these: every norm layer
# (norm_decay_mult) and what the backbone's no_weight_decay() names
# (NoDecayOptimWrapperConstructor); decay on such gains and scales pulls them toward 0 rather
# than regularising. To follow the release exactly, set
# optim_wrapper = dict(constructor='DefaultOptimWrapperConstructor', paramwise_cfg=dict(
#     _delete_=True, custom_keys={'norm': dict(decay_mult=0.)}))
# (tests/test_release_recipes.py checks both rules parameter by parameter).
_base_ = 'mmseg::_base_/schedules/schedule_80k.py'

max_iters = 80000
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper', constructor='NoDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=max_iters),
]
train_cfg = dict(max_iters=max_iters)
