# The CrossViT-18† backbone (multi-conv patch embedding) with its small-patch branch at stride
# 8, for configs to plug in with `backbone={{_base_.crossvit_backbone}}`. Variants override
# arch; 'imagenet' follows it to the CrossViT release's ImageNet weights (which timm also uses).
custom_imports = dict(imports=['xcit_dense'], allow_failed_imports=False)

crossvit_backbone = dict(
    _delete_=True,  # replaces the base config's ResNet
    type='CrossViT',
    arch='18_dagger',
    patch_strides=(8, 16),
    drop_path_rate=0.1,
    norm_cfg=dict(type='SyncBN'),  # 8 GPUs x 2 images; tools/ fall back to BN on CPU
    init_cfg=dict(type='Pretrained', checkpoint='imagenet'))
