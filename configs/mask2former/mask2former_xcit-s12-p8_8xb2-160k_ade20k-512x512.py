# Mask2Former semantic segmentation with an XCiT-S12/8 backbone: mmseg's recipe (160k
# iterations, ADE20k 512x512 crops, 8 GPUs x 2 images), only the backbone and the pixel
# decoder's input widths change; it reads the four maps, strides 4, 8, 16, 32. The optimizer
# stays mmseg's (AdamW, backbone lr x0.1); our constructor only adds XCiT's no_weight_decay()
# exemptions (positional encoding, XCA temperatures, LayerScale gains).
# mmseg's file sets custom_imports (mmdet.models, for the pixel decoder), so it cannot sit
# beside ../_base_/models/xcit-s12-p8.py among the bases (mmengine refuses a key that two bases
# both set): the imports and that file's backbone are written out here.
_base_ = [
    'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py',
    '../_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmdet.models', 'xcit_dense'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True, type='XCiT', arch='small_12', patch_size=8,
        norm_cfg=dict(type='SyncBN'),  # 8 GPUs x 2 images; tools/ fall back to BN on CPU
        init_cfg=dict(type='Pretrained', checkpoint='imagenet')),
    decode_head=dict(in_channels=[384] * 4))
optim_wrapper = dict(constructor='NoDecayOptimWrapperConstructor')
