# Semantic FPN, XCiT-S12/8, mixed precision (fp16 autocast, dynamic loss scaling; GPU only).
# Any config can also be trained with AMP by `tools/train.py CONFIG --amp`.
_base_ = './fpn_xcit-s12-p8_8xb2-80k_ade20k-512x512.py'
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
