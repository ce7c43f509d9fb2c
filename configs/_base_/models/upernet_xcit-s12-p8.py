# UperNet with an XCiT-S12/8 backbone, as in the XCiT release: UPerHead with 512 channels and
# pool scales (1, 2, 3, 6), auxiliary FCNHead on the third level (256 channels, weight 0.4).
_base_ = ['mmseg::_base_/models/upernet_r50.py', './xcit-s12-p8.py']

model = dict(
    pretrained=None,
    backbone={{_base_.xcit_backbone}},
    decode_head=dict(in_channels=[384, 384, 384, 384], pool_scales=(1, 2, 3, 6), channels=512,
                     num_classes=150),
    auxiliary_head=dict(in_channels=384, in_index=2, channels=256, num_classes=150,
                        loss_decode=dict(loss_weight=0.4)))
