# ADE20k, 512x512 crops from images resized to 0.5..2.0 of 2048x512, whole-image test at
# 2048x512 (mmseg's pipeline); 8 GPUs x 2 images as in the XCiT release.
_base_ = 'mmseg::_base_/datasets/ade20k.py'
train_dataloader = dict(batch_size=2)
