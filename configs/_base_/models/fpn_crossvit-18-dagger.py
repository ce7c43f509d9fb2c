# Semantic FPN with a CrossViT-18† backbone: mmseg's FPN (256 channels, 4 outputs) on the four
# maps, FPNHead with 128 channels as for XCiT, ADE20k's 150 classes.
_base_ = ['mmseg::_base_/models/fpn_r50.py', './crossvit-18-dagger.py']

model = dict(
    pretrained=None,
    backbone={{_base_.crossvit_backbone}},
    neck=dict(in_channels=[224, 224, 448, 448]),
    decode_head=dict(num_classes=150))
