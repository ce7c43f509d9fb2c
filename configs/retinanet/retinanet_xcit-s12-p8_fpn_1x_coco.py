# RetinaNet with an XCiT-S12/8 backbone: mmdet's RetinaNet, only the backbone and the FPN
# input widths change (this is all it takes to put XCiT under any mmdet head). RetinaNet's FPN
# starts at stride 8 (start_level=1) and adds P6, P7 on its input.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/default_runtime.py',
    '../_base_/models/xcit-s12-p8.py',
]
model = dict(backbone={{_base_.xcit_backbone}}, neck=dict(in_channels=[384, 384, 384, 384]))
