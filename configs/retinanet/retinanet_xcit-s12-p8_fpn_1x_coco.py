# RetinaNet with an XCiT-S12/8 backbone: mmdet's RetinaNet, only the backbone and the FPN
# input widths change (this is all it takes to put XCiT under any mmdet head).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['xcit_dense'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='XCiT',
        arch='small_12',
        patch_size=8,
        drop_path_rate=0.05,
        norm_cfg=dict(type='SyncBN'),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://dl.fbaipublicfiles.com/xcit/xcit_small_12_p8_224.pth')),
    # RetinaNet's FPN starts at stride 8 (start_level=1) and adds P6, P7 on its input.
    neck=dict(in_channels=[384, 384, 384, 384]))
