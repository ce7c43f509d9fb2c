# Mask R-CNN with XCiT-S12/8 on COCO, the release's 3x multi-scale crop recipe (trained fp32
# and with more weight-decay exemptions: see configs/_base_/schedules/adamw_3x.py):
#   python tools/train.py configs/maskrcnn_xcit_s12_p8_coco.py
_base_ = './mask_rcnn/mask-rcnn_xcit-s12-p8_fpn_ms-crop-3x_coco.py'
