# UperNet, XCiT-S12/8, tested with 512x512 sliding windows (stride 341) for
# high-resolution images, instead of whole-image inference.
_base_ = './upernet_xcit-s12-p8_8xb2-160k_ade20k-512x512.py'
model = dict(test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
