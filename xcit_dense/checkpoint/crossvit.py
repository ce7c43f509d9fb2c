"""CrossViT checkpoints: key conversion to ``xcit_dense.CrossViT`` names, and loading.

Formats:
    * ``timm``: timm's ``CrossVit`` (``pos_embed_0``, ``cls_token_0``), ``.pth`` or
      ``.safetensors``.
    * ``crossvit``: the CrossViT release (IBM), whose parameter lists are saved as
      ``pos_embed.0`` and ``cls_token.0``; otherwise timm's names.
    * ``crossvit-dense``: xcit_dense's own mmdet/mmseg checkpoints (``backbone.*``).
"""
import re
from typing import Dict, Tuple, Union

import torch
import torch.nn as nn

from .convert import unwrap_state_dict
from .load import load_backbone_checkpoint

# Parts of the classification model that the dense backbone does not have: the final norms
# (the pyramid normalises each map itself) and the heads; and the last multi-scale block's
# fusion, which only updates the class tokens for the heads.
CLASSIFICATION_KEYS = re.compile(r'^(norm|head)\.')
_FUSION_KEYS = re.compile(r'^blocks\.(\d+)\.(projs|fusion|revert_projs)\.')
_RELEASE_PARAMS = re.compile(r'^(pos_embed|cls_token)\.(\d+)$')


def detect_crossvit_format(state_dict: Dict[str, torch.Tensor]) -> str:
    """Name the format of an unwrapped state dict (see the module docstring)."""
    if any(k.startswith('backbone.') for k in state_dict):
        return 'crossvit-dense'
    if any(_RELEASE_PARAMS.match(k) for k in state_dict):
        return 'crossvit'
    return 'timm'


def convert_crossvit_state_dict(ckpt: Dict) -> Tuple[Dict[str, torch.Tensor], str]:
    """Convert a checkpoint of any supported format to ``xcit_dense.CrossViT`` key names.

    The final norms, the classification heads, the last multi-scale block's fusion and, for
    detector/segmentor checkpoints, everything outside ``backbone.`` are dropped. The class
    tokens stay: the branches exchange information through them.

    Returns:
        The converted state dict and the name of the detected format.
    """
    state = unwrap_state_dict(ckpt)
    fmt = detect_crossvit_format(state)
    if fmt == 'crossvit-dense':
        state = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    last = max((int(k.split('.')[1]) for k in state if k.startswith('blocks.')), default=-1)
    converted = {}
    for key, value in state.items():
        key = _RELEASE_PARAMS.sub(r'\1_\2', key)
        fusion = _FUSION_KEYS.match(key)
        if not CLASSIFICATION_KEYS.match(key) and not (fusion and int(fusion[1]) == last):
            converted[key] = value
    return converted, fmt


def describe_crossvit_arch(state: Dict) -> str:
    """Widths, depths, MLP ratios, stem and position grids of a CrossViT state dict, for
    error messages."""
    widths, depths, ratios, grids = [], [], [], []
    for b in range(2):
        width = state[f'cls_token_{b}'].shape[-1] if f'cls_token_{b}' in state else None
        fc1 = state.get(f'blocks.0.blocks.{b}.0.mlp.fc1.weight')
        pos = state.get(f'pos_embed_{b}')
        widths.append(width or '?')
        depths.append(len({k.split('.')[4] for k in state
                           if k.startswith(f'blocks.0.blocks.{b}.')}))
        ratios.append(fc1.shape[0] / width if fc1 is not None and width else '?')
        grids.append(round((pos.shape[1] - 1) ** 0.5) if pos is not None else '?')
    num_blocks = len({k.split('.')[1] for k in state if k.startswith('blocks.')})
    stem = ('multi-conv' if any(k.startswith('patch_embed.0.proj.0.') for k in state)
            else 'linear')
    return (f'embed_dim={tuple(widths)}, {num_blocks} multi-scale blocks of {tuple(depths)} '
            f'blocks, mlp_ratio={tuple(ratios)}, {stem} patch embedding, position grids '
            f'{tuple(grids)}')


def load_crossvit_checkpoint(model: nn.Module,
                             checkpoint: Union[str, Dict]) -> Dict[str, list]:
    """Load a CrossViT checkpoint of any supported format into ``model``.

    Args:
        model: An :class:`xcit_dense.CrossViT` backbone.
        checkpoint: A path or URL, or an already loaded checkpoint dict.

    Returns:
        ``dict(missing=[...], unexpected=[...])``: backbone keys the checkpoint lacked and
        checkpoint keys the backbone has no use for (both are also logged).

    Raises:
        RuntimeError: No key of the checkpoint matches the backbone (it is not a CrossViT
            checkpoint), or tensors have other shapes (another CrossViT variant).
    """
    return load_backbone_checkpoint(
        model, checkpoint, convert_crossvit_state_dict, describe_crossvit_arch,
        name='CrossViT',
        formats='timm (.pth or .safetensors), the CrossViT release and CrossViT '
                'detection/segmentation checkpoints')
