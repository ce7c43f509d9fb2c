# Semantic FPN with an XCiT-S12/8 backbone, as in the XCiT release: FPN with out_channels equal
# to the embedding width and 4 outputs, FPNHead with 128 channels, ADE20k's 150 classes.
_base_ = 'mmseg::_base_/models/fpn_r50.py'
custom_imports = dict(imports=['xcit_dense'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='XCiT',
        arch='small_12',
        patch_size=8,
        drop_path_rate=0.05,
        norm_cfg=dict(type='SyncBN'),  # 8 GPUs x 2 images; tools/ fall back to BN on CPU
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://dl.fbaipublicfiles.com/xcit/xcit_small_12_p8_224.pth')),
    neck=dict(in_channels=[384, 384, 384, 384], out_channels=384, num_outs=4),
    decode_head=dict(in_channels=[384, 384, 384, 384], channels=128, num_classes=150))
