# SegFormer's all-MLP head with an XCiT-S12/8 backbone: mmseg's MiT-B0 recipe (160k iterations,
# ADE20k 512x512 crops, 8 GPUs x 2 images), only the backbone and the head's input widths
# change; the head reads the four maps, strides 4, 8, 16, 32. The optimizer stays mmseg's
# (AdamW 6e-5, head lr x10, no decay on 'norm' parameters; its 'pos_block' key is MiT's and
# matches nothing here); our constructor only adds XCiT's no_weight_decay() exemptions
# (positional encoding, XCA temperatures, LayerScale gains).
_base_ = [
    'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
    '../_base_/default_runtime.py',
    '../_base_/models/xcit-s12-p8.py',
]
model = dict(backbone={{_base_.xcit_backbone}}, decode_head=dict(in_channels=[384] * 4))
optim_wrapper = dict(constructor='NoDecayOptimWrapperConstructor')
