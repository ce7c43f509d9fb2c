# 1x: 12 epochs, LR steps at 8 and 11 (mmdet's 1x); otherwise adamw_3x.py, with its differences
# from the release (fp32, weight decay). The release has no 1x XCiT config.
_base_ = './adamw_3x.py'

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [{{_base_.warmup}}, dict(type='MultiStepLR', begin=0, end=max_epochs,
                                           by_epoch=True, milestones=[8, 11], gamma=0.1)]
