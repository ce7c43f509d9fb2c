# UperNet, XCiT-M24/16, 160k iterations, ADE20k 512x512 crops.
_base_ = './upernet_xcit-s12-p8_8xb2-160k_ade20k-512x512.py'
model = dict(backbone=dict(arch='medium_24', patch_size=16),
             decode_head=dict(in_channels=[512] * 4), auxiliary_head=dict(in_channels=512))
