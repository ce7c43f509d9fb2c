# Layer-wise learning-rate decay (LayerDecayOptimWrapperConstructor, xcit_dense/engine/optim.py):
# lr = 6e-5 * 0.65 ** (num_layers + 1 - layer), num_layers = S12's 12 blocks, layer 0 the patch
# embedding and positional encoding, block i layer i + 1, the pyramid and the UperNet and
# auxiliary heads layer 13. decay_rate 0.65 and num_layers 12: MAE's ViT-B UperNet on ADE20k (He
# et al., "Masked Autoencoders Are Scalable Vision Learners", 2021; mmseg's configs/mae/
# mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py, layer_decay_rate=0.65 with num_layers=12,
# counted as we do), the plain-ViT UperNet recipe closest to this 12-block backbone. Everything
# else, weight-decay rules included, is the leaf's.
# Print the groups: python tools/analysis_tools/print_param_groups.py THIS_CONFIG
_base_ = './upernet_xcit-s12-p8_8xb2-160k_ade20k-512x512.py'
optim_wrapper = dict(constructor='LayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(decay_rate=0.65, num_layers=12))
