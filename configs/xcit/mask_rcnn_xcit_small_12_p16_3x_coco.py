# The XCiT release's config of this name (in its detection/configs/xcit/),
# so that its commands run as they are.
# Ours: mask_rcnn/mask-rcnn_xcit-s12-p16_fpn_ms-crop-3x_coco.py.
_base_ = '../mask_rcnn/mask-rcnn_xcit-s12-p16_fpn_ms-crop-3x_coco.py'
