# RTMDet-Ins (the s model's neck and head, width 128) with an XCiT-S12/8 backbone: mmdet's
# recipe (300 epochs, 8 GPUs x 32 images, AdamW, EMA, the last 20 epochs without mosaic and
# mixup), only the backbone and the CSPNeXtPAFPN's input widths change. Like CSPNeXt, XCiT
# returns three maps, strides 8, 16, 32.
# Two more changes, as mmdet's own RTMDet with Swin makes them:
# - Normalisation. RTMDet's preprocessor normalises BGR images (CSPNeXt was pretrained on
#   BGR); XCiT was pretrained on RGB, so the images are converted and normalised as RGB.
# - Hooks. mmdet's file sets custom_hooks (EMA, the pipeline switch), so it cannot sit beside
#   ../_base_/default_runtime.py among the bases (mmengine refuses a key that two bases both
#   set): its two hooks are kept here and ours (RNGStateHook, NonFiniteLossHook) added.
# The optimizer stays mmdet's (AdamW 0.004, no decay on norms and biases); our constructor only
# adds XCiT's no_weight_decay() exemptions (positional encoding, XCA temperatures, LayerScale
# gains).
_base_ = [
    'mmdet::rtmdet/rtmdet-ins_s_8xb32-300e_coco.py',
    '../_base_/models/xcit-s12-p8_strides-8-16-32.py',
]
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone={{_base_.xcit_backbone}},
    neck=dict(in_channels=[384] * 3))
optim_wrapper = dict(constructor='NoDecayOptimWrapperConstructor')
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True,
         priority=49),
    dict(type='PipelineSwitchHook', switch_epoch=280,
         switch_pipeline={{_base_.train_pipeline_stage2}}),
    dict(type='RNGStateHook'),
    dict(type='NonFiniteLossHook'),
]
