# The XCiT release's config of this name (in its semantic_segmentation/configs/xcit/sem_fpn/),
# so that its commands run as they are. Ours: sem_fpn/fpn_xcit-s24-p16_8xb2-80k_ade20k-512x512.py.
_base_ = '../../sem_fpn/fpn_xcit-s24-p16_8xb2-80k_ade20k-512x512.py'
