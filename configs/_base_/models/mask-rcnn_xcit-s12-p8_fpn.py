# Mask R-CNN with an XCiT-S12/8 backbone: mmdet's Mask R-CNN, with the release's backbone
# settings and FPN on four maps of the embedding width.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['xcit_dense'], allow_failed_imports=False)

model = dict(
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
    neck=dict(in_channels=[384, 384, 384, 384]))
