# Semantic FPN with an XCiT-S12/8 backbone, as in the XCiT release: FPN with out_channels equal
# to the embedding width and 4 outputs, FPNHead with 128 channels, ADE20k's 150 classes.
_base_ = ['mmseg::_base_/models/fpn_r50.py', './xcit-s12-p8.py']

model = dict(
    pretrained=None,
    backbone={{_base_.xcit_backbone}},
    neck=dict(in_channels=[384, 384, 384, 384], out_channels=384, num_outs=4),
    decode_head=dict(in_channels=[384, 384, 384, 384], channels=128, num_classes=150))
