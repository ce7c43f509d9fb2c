# DINO (4-scale) with an XCiT-S12/8 backbone: mmdet's recipe (12 epochs, 8 GPUs x 2 images),
# only the backbone and the ChannelMapper's input widths change. Like ResNet's out_indices
# (1, 2, 3), XCiT returns three maps, strides 8, 16, 32; the ChannelMapper adds the fourth
# (stride 64). The optimizer stays mmdet's (AdamW 1e-4, backbone lr x0.1, gradient clipping
# 0.1); our constructor only adds XCiT's no_weight_decay() exemptions (positional encoding,
# XCA temperatures, LayerScale gains), which mmdet's rules do not know.
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    '../_base_/default_runtime.py',
    '../_base_/models/xcit-s12-p8_strides-8-16-32.py',
]
model = dict(backbone={{_base_.xcit_backbone}}, neck=dict(in_channels=[384] * 3))
optim_wrapper = dict(constructor='NoDecayOptimWrapperConstructor')
