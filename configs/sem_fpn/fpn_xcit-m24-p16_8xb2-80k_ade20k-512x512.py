# Semantic FPN, XCiT-M24/16, 80k iterations, ADE20k 512x512 crops.
# Drop path 0.2: the release's Semantic FPN M24 (its Mask R-CNN and UperNet M24: the
# preset's 0.15).
_base_ = './fpn_xcit-s12-p8_8xb2-80k_ade20k-512x512.py'
model = dict(backbone=dict(arch='medium_24', patch_size=16, drop_path_rate=0.2),
             neck=dict(in_channels=[512] * 4, out_channels=512),
             decode_head=dict(in_channels=[512] * 4))
