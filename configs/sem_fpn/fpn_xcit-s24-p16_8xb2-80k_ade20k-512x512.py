# Semantic FPN, XCiT-S24/16, 80k iterations, ADE20k 512x512 crops.
_base_ = './fpn_xcit-s12-p8_8xb2-80k_ade20k-512x512.py'
model = dict(backbone=dict(arch='small_24', patch_size=16),
             neck=dict(in_channels=[384] * 4, out_channels=384),
             decode_head=dict(in_channels=[384] * 4))
