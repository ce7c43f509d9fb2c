# Mixed precision (fp16 autocast with dynamic loss scaling; GPU only). Any config can also be
# trained with AMP by `tools/train.py CONFIG --amp`.
_base_ = './mask-rcnn_xcit-s12-p8_fpn_ms-crop-3x_coco.py'
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
