# Layer-wise learning-rate decay (LayerDecayOptimWrapperConstructor, xcit_dense/engine/optim.py):
# lr = 6e-5 * 0.65 ** (13 - layer), layer 0 the patch embedding and positional encoding, block i
# layer i + 1, the pyramid and the UperNet and auxiliary heads layer 13 (num_layers = S12's 12
# blocks + 1). decay_rate 0.65: MAE's ViT-B UperNet on ADE20k (He et al., "Masked Autoencoders
# Are Scalable Vision Learners", 2021; mmseg's configs/mae/mae-base_upernet_8xb2-amp-160k_
# ade20k-512x512.py, layer_decay_rate=0.65 with num_layers=12, which counts blocks only), the
# plain-ViT UperNet recipe closest to this 12-block backbone. Everything else, weight-decay
# rules included, is the leaf's.
# Print the groups: python -m xcit_dense.engine.print_param_groups THIS_CONFIG
_base_ = './upernet_xcit-s12-p8_8xb2-160k_ade20k-512x512.py'
optim_wrapper = dict(constructor='LayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(decay_rate=0.65, num_layers=13))
