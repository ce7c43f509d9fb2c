# The XCiT release's Mask R-CNN 3x schedule (detection/configs/xcit/mask_rcnn_*_3x_coco.py,
# mmcv 1.x): 36 epochs, LR x0.1 at epochs 27 and 33, a 500-iteration linear warm-up from
# 0.001 x lr (full at iteration 499 here: mmengine's LinearLR reaches its end value one
# iteration before `end`); AdamW lr 1e-4 (8 GPUs x 2 images), betas (0.9, 0.999), weight decay
# 0.05, no gradient clipping.
# Where we differ, on purpose:
# - Precision. The release trained with apex mixed precision (DistOptimizerHook(use_fp16=True)
#   and EpochBasedRunnerAmp, Swin's code that the release does not ship, facebookresearch/xcit#10).
#   This trains fp32: mmengine has no apex, and fp32 runs anywhere (CPU included).
#   `tools/train.py CONFIG --amp` or the *amp* configs train with torch autocast and dynamic
#   loss scaling (AmpOptimWrapper), the nearest to the release's, though not apex.
# - Weight decay. The release's paramwise_cfg exempts the parameters whose names contain 'norm',
#   which in XCiT are only the blocks' LayerNorms (its other keys, 'absolute_pos_embed' and
#   'relative_position_bias_table', are Swin's and match nothing), so it decayed the BatchNorms
#   (stem, LPI, the /16 pyramid), the XCA temperatures, the LayerScale gammas and the positional
#   encoding. We exempt all of these: every norm layer (norm_decay_mult) and what the
#   backbone's no_weight_decay() names (NoDecayOptimWrapperConstructor); decay on such gains
#   and scales pulls them toward 0 rather than regularising. To follow the release exactly,
#   set optim_wrapper = dict(constructor='DefaultOptimWrapperConstructor', paramwise_cfg=dict(
#   _delete_=True, custom_keys={'norm': dict(decay_mult=0.)})) (tests/test_release_recipes.py
#   checks both rules parameter by parameter).
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
warmup = dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500)
param_scheduler = [warmup, dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
                                milestones=[27, 33], gamma=0.1)]
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper', constructor='NoDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.))
