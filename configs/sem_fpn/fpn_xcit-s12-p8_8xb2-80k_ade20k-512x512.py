# Semantic FPN, XCiT-S12/8, 80k iterations, ADE20k 512x512 crops; 8 GPUs x 2 images.
_base_ = [
    '../_base_/models/fpn_xcit-s12-p8.py',
    '../_base_/datasets/ade20k_8xb2.py',
    '../_base_/schedules/adamw_poly-80k.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/default_runtime.py',
]
model = dict(data_preprocessor=dict(size={{_base_.crop_size}}))  # mmseg's ADE20k crop
