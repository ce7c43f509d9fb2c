"""CrossViT checkpoints: key conversion to ``xcit_dense.CrossViT`` names, and loading.

Formats:
    * ``timm``: timm's ``CrossVit`` (``pos_embed_0``, ``cls_token_0``), ``.pth`` or
      ``.safetensors``.
    * ``crossvit``: the CrossViT release (IBM), whose parameter lists are saved as
      ``pos_embed.0`` and ``cls_token.0``; otherwise timm's names.
    * ``crossvit-dense``: xcit_dense's own backbone (``pyramid.*``), bare or in an mmdet/mmseg
      checkpoint.
"""
import re
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from .load import CheckpointFamily, block_indices

# Parts of the classification model that the dense backbone does not have: the final norms
# (the pyramid normalises each map itself) and the heads; and the last multi-scale block's
# fusion, which only updates the class tokens for the heads.
CLASSIFICATION_KEYS = re.compile(r'^(norm|head)\.')
_FUSION_KEYS = re.compile(r'^blocks\.(\d+)\.(projs|fusion|revert_projs)\.')
_RELEASE_PARAMS = re.compile(r'^(pos_embed|cls_token)\.(\d+)$')


FORMAT_NAMES = {
    'crossvit': "the CrossViT release's",
    'timm': "timm's",
    'crossvit-dense': "xcit_dense's",
}


def detect_format(state_dict: Dict[str, torch.Tensor]) -> str:
    """Name the format of a backbone-relative state dict (see the module docstring)."""
    if any(k.startswith('pyramid.') for k in state_dict):
        return 'crossvit-dense'
    if any(_RELEASE_PARAMS.match(k) for k in state_dict):
        return 'crossvit'
    return 'timm'


def convert_state_dict(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
    """Rename a backbone-relative state dict of any format to ``xcit_dense.CrossViT`` key
    names. The final norms, the classification heads and the last multi-scale block's fusion
    are dropped; the class tokens stay (the branches exchange information through them).
    Returns the converted dict and the detected format."""
    fmt = detect_format(state)
    blocks = block_indices(state)
    last = blocks[-1] if blocks else -1
    converted = {}
    for key, value in state.items():
        key = _RELEASE_PARAMS.sub(r'\1_\2', key)
        fusion = _FUSION_KEYS.match(key)
        if not CLASSIFICATION_KEYS.match(key) and not (fusion and int(fusion[1]) == last):
            converted[key] = value
    return converted, fmt


def _layout(state: Dict) -> Tuple[int, Tuple[int, ...], Optional[str]]:
    """Multi-scale blocks, per-branch depths (of the first) and the patch embedding's kind
    (None without one) of a CrossViT state dict."""
    num_blocks = len({k.split('.')[1] for k in state if k.startswith('blocks.')})
    depths = tuple(len({k.split('.')[4] for k in state if k.startswith(f'blocks.0.blocks.{b}.')})
                   for b in range(2))
    stem = None
    if any(k.startswith('patch_embed.') for k in state):
        stem = ('multi-conv' if any(k.startswith('patch_embed.0.proj.0.') for k in state)
                else 'linear')
    return num_blocks, depths, stem


def describe_arch(state: Dict) -> str:
    """Widths, depths, MLP ratios, stem and position grids of a CrossViT state dict, for
    error messages."""
    widths, ratios, grids = [], [], []
    for b in range(2):
        width = state[f'cls_token_{b}'].shape[-1] if f'cls_token_{b}' in state else None
        fc1 = state.get(f'blocks.0.blocks.{b}.0.mlp.fc1.weight')
        pos = state.get(f'pos_embed_{b}')
        widths.append(width or '?')
        ratios.append(fc1.shape[0] / width if fc1 is not None and width else '?')
        grids.append(round((pos.shape[1] - 1) ** 0.5) if pos is not None else '?')
    num_blocks, depths, stem = _layout(state)
    return (f'embed_dim={tuple(widths)}, {num_blocks} multi-scale blocks of {depths} blocks, '
            f'mlp_ratio={tuple(ratios)}, {stem or "no"} patch embedding, position grids '
            f'{tuple(grids)}')


def check_layout(state: Dict, model: nn.Module) -> Optional[str]:
    """Variants that no tensor shape tells apart: a linear or multi-conv patch embedding
    (``9`` and ``9_dagger``: only the embedding's keys differ), or other depths."""
    theirs, ours = _layout(state), _layout(model.state_dict())
    if theirs[2] is not None and theirs[2] != ours[2]:
        return f'It has a {theirs[2]} patch embedding, the model a {ours[2]} one'
    if theirs[0] and theirs[:2] != ours[:2]:
        return (f'It has {theirs[0]} multi-scale blocks of {theirs[1]} blocks, the model '
                f'{ours[0]} of {ours[1]}')
    return None


CROSSVIT_CHECKPOINTS = CheckpointFamily(
    name='CrossViT', convert=convert_state_dict, describe=describe_arch, check=check_layout,
    format_names=FORMAT_NAMES, formats='timm (.pth or .safetensors), the CrossViT release and '
    'xcit_dense CrossViT detection/segmentation checkpoints')
convert_crossvit_state_dict = CROSSVIT_CHECKPOINTS.convert_checkpoint  # a whole checkpoint's keys
load_crossvit_checkpoint = CROSSVIT_CHECKPOINTS.load  # into a backbone, loudly
