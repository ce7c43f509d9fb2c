# The XCiT release's config of this name (in its semantic_segmentation/configs/xcit/upernet/),
# so that its commands run as they are.
# Ours: upernet/upernet_xcit-m24-p8_8xb2-160k_ade20k-512x512.py.
_base_ = '../../upernet/upernet_xcit-m24-p8_8xb2-160k_ade20k-512x512.py'
