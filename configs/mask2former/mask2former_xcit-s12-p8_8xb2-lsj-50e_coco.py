# Mask2Former instance segmentation with an XCiT-S12/8 backbone: mmdet's recipe (LSJ 1024x1024,
# 368,750 iterations, 8 GPUs x 2 images), only the backbone and the pixel decoder's input widths
# change; it reads the four maps, strides 4, 8, 16, 32. The optimizer stays mmdet's (AdamW,
# backbone lr x0.1); our constructor only adds XCiT's no_weight_decay() exemptions (positional
# encoding, XCA temperatures, LayerScale gains), which mmdet's rules do not know.
_base_ = [
    'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py',
    '../_base_/default_runtime.py',
    '../_base_/models/xcit-s12-p8.py',
]
model = dict(backbone={{_base_.xcit_backbone}}, panoptic_head=dict(in_channels=[384] * 4))
optim_wrapper = dict(constructor='NoDecayOptimWrapperConstructor')
