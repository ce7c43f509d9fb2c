"""Normalisation layers from mmcv-style config dicts, without needing mmcv."""
from typing import Dict

import torch.nn as nn

_NORM_LAYERS = {
    'BN': nn.BatchNorm2d,
    'SyncBN': nn.SyncBatchNorm,
    'GN': nn.GroupNorm,
}


def build_norm_layer(cfg: Dict, num_features: int) -> nn.Module:
    """Build a 2D normalisation layer from ``dict(type='BN' | 'SyncBN' | 'GN', ...)``.

    The extra keys are passed to the layer (``eps``, ``momentum``, ``num_groups``).
    ``requires_grad=False`` freezes its affine parameters, as in mmcv.
    """
    cfg = dict(cfg)
    norm_type = cfg.pop('type', None)
    if norm_type not in _NORM_LAYERS:
        raise KeyError(f'Unknown norm type {norm_type!r} in norm_cfg; '
                       f'valid types are {sorted(_NORM_LAYERS)}')
    requires_grad = cfg.pop('requires_grad', True)
    if norm_type == 'GN':
        layer = nn.GroupNorm(num_channels=num_features, **cfg)
    else:
        layer = _NORM_LAYERS[norm_type](num_features, **cfg)
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return layer
