# The XCiT-S12/8 backbone of xcit-s12-p8.py returning three maps, strides 8, 16 and 32 (blocks
# 5, 7 and 11), for the necks of DETR-style detectors and RTMDet, which start at stride 8; the
# stride-4 level is neither built nor computed. Configs plug it in the same way:
# `backbone={{_base_.xcit_backbone}}`, with three input widths of 384 in the neck.
_base_ = './xcit-s12-p8.py'
xcit_backbone = dict(out_strides=(8, 16, 32))
