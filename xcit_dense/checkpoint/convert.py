"""Key conversion from every XCiT checkpoint format to the names of ``xcit_dense.XCiT``.

Formats:
    * ``xcit``: the XCiT release's ImageNet checkpoints, ``{'model': state_dict}`` with
      ``pos_embeder.*``.
    * ``timm``: timm's ``Xcit`` (``pos_embed.*``), ``.pth`` or ``.safetensors``.
    * ``mmpretrain``: mmpretrain's ``XCiT`` (``backbone.xca_layers.*``, ConvModule names).
    * ``xcit-dense``: the release's detection/segmentation checkpoints (``backbone.*`` with
      ``fpn1..fpn4`` adapters) and xcit_dense's own mmdet/mmseg checkpoints.
"""
import re
from typing import Dict, Tuple

import torch

# Parts of the classification model that the dense backbone does not have.
CLASSIFICATION_KEYS = re.compile(r'^(cls_token|dist_token|cls_attn_blocks\.|ca_layers\.|norm\.|'
                                 r'head\.|head_dist\.)')

_RENAMES = [
    (re.compile(r'^pos_embeder\.'), 'pos_embed.'),  # XCiT release
    (re.compile(r'^fpn([1-4])\.'), lambda m: f'pyramid.{int(m[1]) - 1}.'),  # release dense
    # mmpretrain
    (re.compile(r'^xca_layers\.'), 'blocks.'),
    (re.compile(r'\.ffn\.layers\.0\.0\.'), '.mlp.fc1.'),
    (re.compile(r'\.ffn\.layers\.1\.'), '.mlp.fc2.'),
    (re.compile(r'\.local_mp\.conv1\.conv\.'), '.local_mp.conv1.'),
    (re.compile(r'\.local_mp\.conv1\.bn\.'), '.local_mp.bn.'),
    (re.compile(r'\.local_mp\.conv2\.conv\.'), '.local_mp.conv2.'),
    (re.compile(r'^pos_embed\.token_projection\.conv\.'), 'pos_embed.token_projection.'),
    # mmpretrain's stem is ConvModules (conv, bn, act); timm's is Sequential(conv, bn), GELU, ...
    (re.compile(r'^patch_embed\.proj\.(\d+)\.conv\.'),
     lambda m: f'patch_embed.proj.{2 * int(m[1])}.0.'),
    (re.compile(r'^patch_embed\.proj\.(\d+)\.bn\.'),
     lambda m: f'patch_embed.proj.{2 * int(m[1])}.1.'),
]


def unwrap_state_dict(ckpt: Dict) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint, whether saved bare, as ``{'model': ...}`` (DeiT/XCiT
    release) or as ``{'state_dict': ...}`` (OpenMMLab), without a DDP ``module.`` prefix."""
    for key in ('state_dict', 'model'):
        if isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in ckpt.items()}
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def detect_format(state_dict: Dict[str, torch.Tensor]) -> str:
    """Name the format of an unwrapped state dict (see the module docstring)."""
    keys = list(state_dict)
    if any(k.startswith('backbone.xca_layers.') or k.startswith('xca_layers.') for k in keys):
        return 'mmpretrain'
    if any(k.startswith('backbone.') for k in keys):
        return 'xcit-dense'
    if any(k.startswith('pos_embeder.') for k in keys):
        return 'xcit'
    return 'timm'


def convert_xcit_state_dict(ckpt: Dict) -> Tuple[Dict[str, torch.Tensor], str]:
    """Convert a checkpoint of any supported format to ``xcit_dense.XCiT`` key names.

    Classification-only parts (class token, class-attention layers, final norm, head) and, for
    detector/segmentor checkpoints, everything outside ``backbone.`` are dropped.

    Returns:
        The converted state dict and the name of the detected format.
    """
    state = unwrap_state_dict(ckpt)
    fmt = detect_format(state)
    if any(k.startswith('backbone.') for k in state):
        state = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    converted = {}
    for key, value in state.items():
        for pattern, repl in _RENAMES:
            key = pattern.sub(repl, key)
        if not CLASSIFICATION_KEYS.match(key):
            converted[key] = value
    return converted, fmt
