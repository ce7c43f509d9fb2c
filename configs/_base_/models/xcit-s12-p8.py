# The XCiT-S12/8 backbone as the release configures it for detection and segmentation, for
# configs to plug in with `backbone={{_base_.xcit_backbone}}`. Variants override arch and
# patch_size: the drop-path rate follows the preset (XCiT's ARCH_ZOO) and 'imagenet' the
# preset and patch size (XCiT.imagenet_url).
custom_imports = dict(imports=['xcit_dense'], allow_failed_imports=False)

xcit_backbone = dict(
    _delete_=True,  # replaces the base config's ResNet
    type='XCiT',
    arch='small_12',
    patch_size=8,
    norm_cfg=dict(type='SyncBN'),  # 8 GPUs x 2 images; tools/ fall back to BN on CPU
    init_cfg=dict(type='Pretrained', checkpoint='imagenet'))
