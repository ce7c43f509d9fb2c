"""XCiT checkpoints: every format users hold, converted to the key names of
``xcit_dense.XCiT``.

Formats (names of the backbone's keys):
    * ``xcit-release``: the XCiT release. Its ImageNet classifiers (``xcit_*_224.pth``,
      ``*_224_dist.pth``, ``*_384_dist.pth``: ``{'model': state_dict, ...}``), its DINO
      backbones (``xcit_*_cp{8,16}_dino.pth``: a bare state dict) and its trained detectors
      and segmentors (mmcv 1.x files ``{'meta': ..., 'state_dict': ...}`` whose backbone keeps
      ``pos_embeder.*`` and the ``fpn1`` ... ``fpn4`` adapters; their necks and heads have
      mmdet 3.x's / mmseg 1.x's key names already, checked against mmdet 2.11 and mmseg 0.11
      in the tests).
    * ``timm``: timm's ``Xcit`` (``pos_embed.*``), ``.pth`` or ``.safetensors``.
    * ``mmpretrain``: mmpretrain's ``XCiT`` (``backbone.xca_layers.*``, ConvModule names).
    * ``xcit-dense``: xcit_dense's own backbone (``pyramid.*``), bare or in an mmdet/mmseg
      checkpoint.
"""
import re
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from .load import CheckpointFamily, _log, block_indices

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

FORMAT_NAMES = {
    'xcit-release': "the XCiT release's",
    'timm': "timm's",
    'mmpretrain': "mmpretrain's",
    'xcit-dense': "xcit_dense's",
}


def detect_format(state_dict: Dict[str, torch.Tensor]) -> str:
    """Name the format of a backbone-relative state dict (see the module docstring)."""
    keys = list(state_dict)
    if any(k.startswith('xca_layers.') for k in keys):
        return 'mmpretrain'
    if any(k.startswith(('pos_embeder.', 'fpn1.', 'fpn2.')) for k in keys):
        return 'xcit-release'
    if any(k.startswith('pyramid.') for k in keys):
        return 'xcit-dense'
    return 'timm'


def convert_state_dict(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
    """Rename a backbone-relative state dict of any format to ``xcit_dense.XCiT`` key names,
    dropping the classification-only parts (class token, class-attention layers, final norm,
    heads). Returns the converted dict and the detected format."""
    fmt = detect_format(state)
    converted = {}
    for key, value in state.items():
        for pattern, repl in _RENAMES:
            key = pattern.sub(repl, key)
        if not CLASSIFICATION_KEYS.match(key):
            converted[key] = value
    return converted, fmt


def describe_arch(state: Dict) -> str:
    """Width, depth and patch size of an XCiT state dict, for error messages."""
    width = state['blocks.0.norm1.weight'].shape[0] if 'blocks.0.norm1.weight' in state else '?'
    depth = len(block_indices(state))
    stem_convs = len({k.split('.')[2] for k in state if k.startswith('patch_embed.proj.')})
    patch = 2 ** stem_convs if stem_convs else '?'
    return f'embed_dim={width}, {depth} blocks, patch_size={patch}'


def fit_depth(state: Dict, model: nn.Module) -> Optional[str]:
    """Same-width XCiT variants of other depths (S12 and S24) share every tensor shape, so the
    depth is checked by counting blocks. A model whose last ``out_indices`` entry is not the
    final block keeps fewer blocks than its preset: the checkpoint's unused blocks are dropped
    (in place) with a log line."""
    depth = len(block_indices(state))
    kept = len(getattr(model, 'blocks', ()))
    preset = getattr(model, 'arch', {}).get('depth', kept)
    if depth == preset and kept < preset:
        for k in [k for k in state if k.startswith('blocks.') and int(k.split('.')[1]) >= kept]:
            del state[k]
        unused = (f'block {kept} is' if kept == preset - 1
                  else f'blocks {kept} to {preset - 1} are')
        _log(f'The model keeps {kept} of its {preset} blocks (out_indices end at block '
             f'{kept - 1}): the checkpoint\'s {unused} not loaded')
        return None
    if depth and depth != kept:
        return (f'It has {depth} blocks, the model {kept}'
                + (f' (of a {preset}-block preset)' if kept != preset else ''))
    return None


XCIT_CHECKPOINTS = CheckpointFamily(
    name='XCiT', convert=convert_state_dict, describe=describe_arch, check=fit_depth,
    format_names=FORMAT_NAMES, formats='the XCiT release (ImageNet, DINO, detection and '
    'segmentation), timm, mmpretrain and xcit_dense checkpoints')
convert_xcit_state_dict = XCIT_CHECKPOINTS.convert_checkpoint  # a whole checkpoint's keys
load_xcit_checkpoint = XCIT_CHECKPOINTS.load  # into a backbone, loudly
