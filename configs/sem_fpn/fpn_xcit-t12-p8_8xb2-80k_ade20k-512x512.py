# Semantic FPN, XCiT-T12/8, 80k iterations, ADE20k 512x512 crops.
_base_ = './fpn_xcit-s12-p8_8xb2-80k_ade20k-512x512.py'
model = dict(backbone=dict(arch='tiny_12', patch_size=8),
             neck=dict(in_channels=[192] * 4, out_channels=192),
             decode_head=dict(in_channels=[192] * 4))
