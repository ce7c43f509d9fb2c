# Layer-wise learning-rate decay (LayerDecayOptimWrapperConstructor, xcit_dense/engine/optim.py):
# lr = 1e-4 * 0.7 ** (num_layers + 1 - layer), num_layers = S12's 12 blocks, layer 0 the patch
# embedding and positional encoding, block i layer i + 1, the pyramid, FPN and heads layer 13.
# decay_rate 0.7 and num_layers 12: ViTDet's for its 12-block ViT-B (Li et al., "Exploring
# Plain Vision Transformer Backbones for Object Detection", 2022; detectron2's ViTDet and mmdet's
# projects/ViTDet configs, which count num_layers as we do), the plain-ViT Mask R-CNN recipe
# closest to this 12-block backbone. Everything else, weight-decay rules included, is the leaf's.
# Print the groups: python tools/analysis_tools/print_param_groups.py THIS_CONFIG
_base_ = './mask-rcnn_xcit-s12-p8_fpn_ms-crop-3x_coco.py'
optim_wrapper = dict(constructor='LayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(decay_rate=0.7, num_layers=12))
