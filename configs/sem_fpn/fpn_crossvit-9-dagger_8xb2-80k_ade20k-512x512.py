# Semantic FPN, CrossViT-9†, 80k iterations, ADE20k 512x512 crops.
_base_ = './fpn_crossvit-18-dagger_8xb2-80k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='9_dagger',
        init_cfg=dict(checkpoint=('https://github.com/IBM/CrossViT/releases/download/weights-0.1/'
                                  'crossvit_9_dagger_224.pth'))),
    neck=dict(in_channels=[128, 128, 256, 256]))
