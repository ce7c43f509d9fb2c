# The release's 160k schedule: as adamw_poly-80k, poly decay to 0 at 160k iterations.
_base_ = './adamw_poly-80k.py'

max_iters = 160000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=16000)
default_hooks = dict(checkpoint=dict(interval=16000))
