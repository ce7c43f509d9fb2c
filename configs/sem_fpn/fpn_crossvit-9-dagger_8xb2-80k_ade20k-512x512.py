# Semantic FPN, CrossViT-9†, 80k iterations, ADE20k 512x512 crops.
_base_ = './fpn_crossvit-18-dagger_8xb2-80k_ade20k-512x512.py'
model = dict(backbone=dict(arch='9_dagger'), neck=dict(in_channels=[128, 128, 256, 256]))
