# The release's 160k schedule (its UperNet configs): adamw_poly-80k.py's, with the poly decay
# over all 160k iterations (from iteration 0, under the 1500-iteration warm-up), validation
# and checkpoints every 16k; the same weight decay difference (see adamw_poly-80k.py).
_base_ = './adamw_poly-80k.py'

max_iters = 160000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=16000)
default_hooks = dict(checkpoint=dict(interval=16000))
