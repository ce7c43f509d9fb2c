"""Loading a converted checkpoint into a backbone (XCiT, CrossViT), loudly."""
import logging
from typing import Callable, Dict, Optional, Tuple, Union

import torch.nn as nn

from .convert import convert_xcit_state_dict
from .io import load_state_dict_file

logger = logging.getLogger(__name__)


def _log(msg: str, level: int = logging.INFO) -> None:
    """Log through mmengine's current logger when there is one (it is what runs show)."""
    try:
        from mmengine.logging import print_log
    except ImportError:
        logger.log(level, msg)
    else:
        print_log(msg, logger='current', level=level)


def describe_arch(state: Dict) -> str:
    """Width, depth and patch size of an XCiT state dict, for error messages."""
    width = state['blocks.0.norm1.weight'].shape[0] if 'blocks.0.norm1.weight' in state else '?'
    depth = len({k.split('.')[1] for k in state if k.startswith('blocks.')})
    stem_convs = len({k.split('.')[2] for k in state if k.startswith('patch_embed.proj.')})
    patch = 2 ** stem_convs if stem_convs else '?'
    return f'embed_dim={width}, {depth} blocks, patch_size={patch}'


def _abbrev(keys: list, limit: int = 20) -> str:
    return str(keys[:limit])[:-1] + (f', ... {len(keys) - limit} more]' if len(keys) > limit
                                     else ']')


def _check_xcit_depth(state: Dict, model: nn.Module) -> Optional[str]:
    """Same-width XCiT variants of other depths (S12 and S24) share every tensor shape."""
    depth = len({k.split('.')[1] for k in state if k.startswith('blocks.')})
    expected = getattr(model, 'arch', {}).get('depth')
    if expected is not None and depth != expected:
        return f'It has {depth} blocks, the model {expected}'
    return None


def load_backbone_checkpoint(model: nn.Module, checkpoint: Union[str, Dict],
                             convert_fn: Callable[[Dict], Tuple[Dict, str]],
                             describe_fn: Callable[[Dict], str], name: str, formats: str,
                             check_fn: Optional[Callable[[Dict, nn.Module], Optional[str]]] = None
                             ) -> Dict[str, list]:
    """Load a checkpoint into a backbone, loudly: the loader behind each model family's.

    Args:
        model: The backbone.
        checkpoint: A path or URL, or an already loaded checkpoint dict.
        convert_fn: Turns the checkpoint into ``(state dict with the backbone's key names,
            name of the detected format)``.
        describe_fn: Summarises the architecture of a state dict (widths, depths...) for the
            error raised when the tensors do not fit.
        name: The model family in messages (``'XCiT'``).
        formats: The supported formats, in words, for the error raised when nothing matches.
        check_fn: Optional ``(state, model) -> problem or None``, for architectures that
            differ without any tensor changing shape (e.g. another depth).

    Returns:
        ``dict(missing=[...], unexpected=[...])``: backbone keys the checkpoint lacked and
        checkpoint keys the backbone has no use for (both are also logged).

    Raises:
        RuntimeError: No key of the checkpoint matches the backbone (it is a checkpoint of
            another model), or tensors have other shapes (another variant).
    """
    source = checkpoint if isinstance(checkpoint, str) else '<state dict>'
    ckpt = load_state_dict_file(checkpoint) if isinstance(checkpoint, str) else checkpoint
    state, fmt = convert_fn(ckpt)
    own = model.state_dict()
    matched = [k for k in state if k in own]
    if not matched:
        raise RuntimeError(
            f'No key of checkpoint {source} matches the {name} backbone, so nothing would be '
            f'loaded. Checkpoint keys start with: {sorted(state)[:8]}; backbone keys start '
            f'with: {sorted(own)[:8]}. Supported formats: {formats}.')
    mismatched = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in matched if state[k].shape != own[k].shape]
    # BatchNorm's step counter is not a weight (torch does not report it missing either)
    missing = [k for k in own if k not in state and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in own]
    problem = check_fn(state, model) if check_fn else None
    if mismatched or problem:
        raise RuntimeError(
            f'Checkpoint {source} does not fit this {name} architecture: it looks like '
            f'{describe_fn(state)}, the model is {describe_fn(own)}. '
            + (f'{problem}. ' if problem else '')
            + (f'{len(mismatched)} tensors have other shapes:\n  ' + '\n  '.join(mismatched[:20])
               if mismatched else '')
            + f'\nMissing keys ({len(missing)}): {_abbrev(missing)}'
            + f'\nUnexpected keys ({len(unexpected)}): {_abbrev(unexpected)}')
    model.load_state_dict({k: state[k] for k in matched}, strict=False)
    _log(f'Loaded {len(matched)} {name} tensors from {source} ({fmt} format)')
    if missing:
        _log(f'Keys missing from {source} (left at their initialisation): {missing}',
             logging.WARNING)
    if unexpected:
        _log(f'Keys of {source} the backbone does not use: {unexpected}', logging.WARNING)
    return dict(missing=missing, unexpected=unexpected)


def load_init_cfg(model: nn.Module, init_cfg: Optional[Dict],
                  load_fn: Callable[[nn.Module, str], Dict], name: str) -> None:
    """The backbones' ``init_weights``: load ``init_cfg``'s pretrained checkpoint (if any)
    into ``model`` with ``load_fn``; any other ``init_cfg`` is an error, not a silent no-op."""
    if init_cfg is None:
        return
    cfg = dict(init_cfg)
    if cfg.pop('type', None) != 'Pretrained' or 'checkpoint' not in cfg:
        raise ValueError(f"{name} init_cfg must be dict(type='Pretrained', checkpoint=PATH), "
                         f'got {init_cfg}')
    load_fn(model, cfg['checkpoint'])


def load_xcit_checkpoint(model: nn.Module, checkpoint: Union[str, Dict]) -> Dict[str, list]:
    """Load an XCiT checkpoint of any supported format into ``model``.

    Args:
        model: An :class:`xcit_dense.XCiT` backbone.
        checkpoint: A path or URL, or an already loaded checkpoint dict.

    Returns:
        ``dict(missing=[...], unexpected=[...])``: backbone keys the checkpoint lacked and
        checkpoint keys the backbone has no use for (both are also logged).

    Raises:
        RuntimeError: No key of the checkpoint matches the backbone (it is not an XCiT
            checkpoint), or it is another XCiT variant (other shapes or depth); the message
            lists the mismatched, missing and unexpected keys.
    """
    return load_backbone_checkpoint(
        model, checkpoint, convert_xcit_state_dict, describe_arch, name='XCiT',
        check_fn=_check_xcit_depth,
        formats='the XCiT release, timm, mmpretrain and XCiT detection/segmentation '
                'checkpoints')
