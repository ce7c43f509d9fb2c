"""Loading checkpoints into a backbone (XCiT, CrossViT), loudly: the family-free loader behind
each model family's, and the conversion a backbone applies when a whole model is loaded."""
import logging
import re
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from .io import load_state_dict_file, source_of

logger = logging.getLogger(__name__)


# The dense backbones' own layers (strides 4-32 from the transformer's maps): the only tensors
# that an ImageNet or DINO checkpoint lacks.
ADAPTER_PREFIX = 'pyramid.'


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model it is loaded into: tensors are missing or have other
    shapes, so part of the model would keep its initialisation."""


@dataclass(frozen=True)
class CheckpointFamily:
    """What the loader needs to know about a model family's checkpoints.

    Attributes:
        name: The family in messages (``'XCiT'``).
        convert: Backbone-relative state dict in any supported format -> (the same tensors
            under the backbone's own key names, name of the detected format). Parts the dense
            backbone does not have (classifier heads...) are dropped.
        describe: Summary of a converted state dict's architecture (widths, depths...).
        formats: The supported formats, in words, for the error raised when nothing matches.
        format_names: Each format name returned by ``convert``, in words.
        check: Optional ``(converted state, model) -> problem or None`` for architectures that
            differ without any tensor changing shape (another depth); it may drop tensors the
            model does not use.
    """
    name: str
    convert: Callable[[Dict[str, torch.Tensor]], Tuple[Dict[str, torch.Tensor], str]]
    describe: Callable[[Dict], str]
    formats: str
    format_names: Dict[str, str]
    check: Optional[Callable[[Dict, nn.Module], Optional[str]]] = None

    def convert_checkpoint(self, ckpt: Dict) -> Tuple[Dict[str, torch.Tensor], str]:
        """Convert a whole checkpoint (a file's contents: wrapped or bare, classifier, backbone
        or detector/segmentor) to the backbone's key names; everything outside ``backbone.``
        of a detector/segmentor is dropped. Returns the state dict and the detected format."""
        return self.convert(backbone_part(unwrap_state_dict(ckpt)))

    def load(self, model: nn.Module, checkpoint: Union[str, Dict]) -> Dict[str, list]:
        """Load a checkpoint (a path, URL or loaded dict) of any of the family's formats into
        its backbone: :func:`load_backbone_checkpoint`."""
        return load_backbone_checkpoint(model, checkpoint, self)


def _log(msg: str, level: int = logging.INFO) -> None:
    """Log through mmengine's current logger when there is one (it is what runs show)."""
    try:
        from mmengine.logging import print_log
    except ImportError:
        logger.log(level, msg)
    else:
        print_log(msg, logger='current', level=level)


def _abbrev(keys: list, limit: int = 20) -> str:
    return str(keys[:limit])[:-1] + (f', ... {len(keys) - limit} more]' if len(keys) > limit
                                     else ']')


def _compare(state: Dict, own: Dict) -> Tuple[List[str], List[str], List[str]]:
    """Tensors of other shapes (described), keys the model has that ``state`` lacks (not
    BatchNorm's step counter, which is no weight), and keys of ``state`` the model lacks."""
    mismatched = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in own if k in state and state[k].shape != own[k].shape]
    missing = [k for k in own if k not in state and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in own]
    return mismatched, missing, unexpected


def _key_report(problem: Optional[str], mismatched: List[str], missing: List[str],
                unexpected: List[str], prefix: str = '') -> str:
    """The part of a mismatch error that lists what does not fit."""
    return ((f'{problem}. ' if problem else '')
            + (f'{len(mismatched)} tensors have other shapes:\n  ' + '\n  '.join(mismatched[:20])
               if mismatched else '')
            + f'\nMissing keys ({len(missing)}): {_abbrev([prefix + k for k in missing])}'
            + f'\nUnexpected keys ({len(unexpected)}): '
            + _abbrev([prefix + k for k in unexpected]))


def unwrap_state_dict(ckpt: Dict) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint, whether saved bare, as ``{'model': ...}`` (DeiT/XCiT
    release), ``{'state_dict': ...}`` (OpenMMLab) or ``{'teacher': ...}`` (a DINO training
    checkpoint), without a DDP ``module.`` prefix."""
    for key in ('state_dict', 'model', 'teacher'):
        if isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in ckpt.items()}
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def backbone_part(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The backbone's tensors of a detector/segmentor state dict (``backbone.*``, prefix
    removed), or the whole state dict when it has no ``backbone.`` keys."""
    if any(k.startswith('backbone.') for k in state):
        return {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    return state


# mmengine's runner writes its version followed by the training repository's git hash
_GIT_HASH_SUFFIX = re.compile(r'(?<=\d)[0-9a-f]{40}$')


def describe_checkpoint(ckpt: Dict) -> str:
    """What a loaded checkpoint file looks like, for error messages: who wrote it (library
    versions from its ``meta``), which top-level modules it holds and how many classes."""
    meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    versions = [f'{k[:-len("_version")]} {_GIT_HASH_SUFFIX.sub("", v)}'
                for k, v in sorted(meta.items()) if k.endswith('_version') and isinstance(v, str)]
    if 'state_dict' in ckpt:
        kind = ('an OpenMMLab 1.x checkpoint (mmcv 1.x runner)' if 'mmcv_version' in meta
                else 'an OpenMMLab checkpoint')
    elif 'model' in ckpt:
        kind = "a classification training checkpoint ({'model': ...}, DeiT/XCiT style)"
    elif 'teacher' in ckpt:
        kind = 'a DINO training checkpoint (teacher weights)'
    else:
        kind = 'a bare state dict'
    state = unwrap_state_dict(ckpt)
    modules = sorted({k.split('.')[0] for k in state})
    text = kind + (f' written by {", ".join(versions)}' if versions else '')
    text += f'; top-level modules: {", ".join(modules[:12])}'
    text += ' ...' if len(modules) > 12 else ''
    classes = meta.get('CLASSES') or (meta.get('dataset_meta') or {}).get('classes')
    if classes:
        text += f'; {len(classes)} classes'
    return text


def adapt_loaded_state(module: nn.Module, state_dict: Dict[str, torch.Tensor], prefix: str,
                       family: CheckpointFamily) -> None:
    """Called by a backbone's ``_load_from_state_dict``, which every load path of torch and
    mmengine goes through (``load_state_dict``, ``load_from``, ``tools/test.py``, inferencers):
    convert the keys under ``prefix`` from any supported format to the backbone's own, in
    place, and, when the backbone is loaded as part of a whole model (a non-empty prefix),
    refuse to leave any of its tensors at their initialisation.

    Raises:
        CheckpointMismatchError: A whole-model checkpoint lacks backbone tensors, has some of
            another shape or is another variant. The message names the file, its format, the
            architecture it looks like and the missing and unexpected keys.
    """
    ours = [k for k in state_dict if k.startswith(prefix)]
    theirs = {k[len(prefix):]: state_dict.pop(k) for k in ours}
    source = source_of(theirs)
    converted, fmt = family.convert(theirs) if theirs else ({}, None)
    problem = family.check(converted, module) if family.check and converted else None
    state_dict.update({prefix + k: v for k, v in converted.items()})
    if not prefix:  # the backbone itself is loaded: torch's strict flag decides
        return
    own = module.state_dict()
    mismatched, missing, unexpected = _compare(converted, own)
    if not (missing or mismatched or problem):
        return
    looks_like = (f'{family.format_names.get(fmt, fmt)} keys of {family.describe(converted)}'
                  if converted else f'no {family.name} tensors under {prefix!r}')
    raise CheckpointMismatchError(
        f'{source} would leave the {family.name} backbone '
        f'at {prefix[:-1]!r} partly at its initialisation: it holds {looks_like}; the model is '
        f'{family.describe(own)}. '
        + _key_report(problem, mismatched, missing, unexpected, prefix))


def load_backbone_checkpoint(model: nn.Module, checkpoint: Union[str, Dict],
                             family: CheckpointFamily) -> Dict[str, list]:
    """Load a checkpoint of any format ``family`` reads into a backbone, loudly.

    Args:
        model: The backbone.
        checkpoint: A path or URL, or an already loaded checkpoint dict.
        family: The model family's checkpoint formats (:class:`CheckpointFamily`).

    Returns:
        ``dict(missing=[...], unexpected=[...])``: backbone keys the checkpoint lacked and
        checkpoint keys the backbone has no use for (both are also logged). ImageNet
        checkpoints have no pyramid, so its tensors are reported missing.

    Raises:
        CheckpointMismatchError: No key of the checkpoint matches the backbone (a checkpoint of
            another model), tensors have other shapes (another variant), or tensors of the
            transformer are missing (a checkpoint of another model whose names match in
            part, such as a ViT's).
    """
    source = checkpoint if isinstance(checkpoint, str) else '<state dict>'
    ckpt = load_state_dict_file(checkpoint) if isinstance(checkpoint, str) else checkpoint
    state, fmt = family.convert_checkpoint(ckpt)
    own = model.state_dict()
    if not any(k in own for k in state):
        raise CheckpointMismatchError(
            f'No key of checkpoint {source} matches the {family.name} backbone, so nothing '
            f'would be loaded. Checkpoint keys start with: {sorted(state)[:8]}; backbone keys '
            f'start with: {sorted(own)[:8]}. Supported formats: {family.formats}.')
    problem = family.check(state, model) if family.check else None
    matched = [k for k in state if k in own]
    mismatched, missing, unexpected = _compare(state, own)
    trunk_missing = [k for k in missing if not k.startswith(ADAPTER_PREFIX)]
    if trunk_missing and not problem:  # e.g. a ViT's file: its blocks' names match in part
        problem = (f'It lacks {len(trunk_missing)} tensors of the transformer (only the '
                   'pyramid adapters, which classification checkpoints do not have, may be '
                   'missing)')
    if mismatched or problem:
        raise CheckpointMismatchError(
            f'Checkpoint {source} does not fit this {family.name} architecture: it looks like '
            f'{family.describe(state)}, the model is {family.describe(own)}. '
            + _key_report(problem, mismatched, missing, unexpected))
    model.load_state_dict({k: state[k] for k in matched}, strict=False)
    _log(f'Loaded {len(matched)} {family.name} tensors from {source} '
         f'({family.format_names.get(fmt, fmt)} format)')
    if missing:
        _log(f'Keys missing from {source} (left at their initialisation): {missing}',
             logging.WARNING)
    if unexpected:
        _log(f'Keys of {source} the backbone does not use: {unexpected}', logging.WARNING)
    return dict(missing=missing, unexpected=unexpected)


def pretrained_to_init_cfg(pretrained: Optional[str], init_cfg: Optional[Dict],
                           name: str) -> Optional[Dict]:
    """mmseg's convention for its backbones' deprecated ``pretrained`` argument: a path or URL
    becomes ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``, with a warning;
    giving both is an error."""
    if pretrained is None:
        return init_cfg
    if init_cfg is not None:
        raise ValueError(f'{name}: init_cfg and pretrained cannot be set at the same time '
                         f'(pretrained={pretrained!r}, init_cfg={init_cfg}); keep init_cfg')
    if not isinstance(pretrained, str):
        raise TypeError(f'{name}: pretrained must be a str or None, got '
                        f'{type(pretrained).__name__}')
    warnings.warn(f'{name}: pretrained is deprecated, use '
                  f"init_cfg=dict(type='Pretrained', checkpoint={pretrained!r}) instead")
    return dict(type='Pretrained', checkpoint=pretrained)


def load_init_cfg(model: nn.Module, init_cfg: Optional[Dict], family: CheckpointFamily) -> None:
    """The backbones' ``init_weights``: load ``init_cfg``'s pretrained checkpoint (if any)
    into ``model``; any other ``init_cfg`` is an error, not a silent no-op."""
    if init_cfg is None:
        return
    cfg = dict(init_cfg)
    if cfg.pop('type', None) != 'Pretrained' or 'checkpoint' not in cfg:
        raise ValueError(f"{family.name} init_cfg must be dict(type='Pretrained', "
                         f'checkpoint=PATH), got {init_cfg}')
    load_backbone_checkpoint(model, cfg['checkpoint'], family)


def block_indices(state: Dict, prefix: str = 'blocks.') -> List[int]:
    """Sorted indices N of the ``blocks.N.*`` keys of a state dict."""
    pattern = re.compile(re.escape(prefix) + r'(\d+)\.')
    return sorted({int(m[1]) for m in map(pattern.match, state) if m})
