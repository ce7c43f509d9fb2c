"""Optimizer construction: the backbone says which of its parameters take no weight decay;
optionally each backbone block learns at its own, layer-wise decayed, rate."""
import logging
import re
import warnings
from typing import List, Optional, Set, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper


def no_weight_decay_params(model: nn.Module) -> Set[int]:
    """The ids of the parameters named by ``model.backbone.no_weight_decay()`` (names relative
    to the backbone; a module's name stands for all its parameters). Empty when the model has
    no backbone or the backbone no such method."""
    backbone = getattr(model, 'backbone', None)
    if backbone is None or not hasattr(backbone, 'no_weight_decay'):
        return set()
    names = backbone.no_weight_decay()
    return {id(p) for n, p in backbone.named_parameters()
            if n in names or any(n.startswith(k + '.') for k in names)}


class NoDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor (all its ``paramwise_cfg`` rules apply), then no weight
    decay on the parameters the backbone's ``no_weight_decay()`` names: for XCiT the
    positional encoding, the XCA temperatures and the LayerScale gains; for CrossViT the
    position embeddings and class tokens. Decay on such gains and scales pulls them toward 0
    rather than regularising. The rule lives with each backbone, so configs only choose this
    constructor::

        optim_wrapper = dict(constructor='NoDecayOptimWrapperConstructor',
                             optimizer=dict(type='AdamW', ...),
                             paramwise_cfg=dict(norm_decay_mult=0.))
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        self._no_decay = no_weight_decay_params(getattr(model, 'module', model))
        if not self.paramwise_cfg:
            self.paramwise_cfg = dict(custom_keys={})  # per-parameter groups, no other rule
        wrapper = super().__call__(model)
        # mmengine hands the groups to the optimizer as ConfigDicts; plain dicts keep
        # optimizer.step() traceable by torch.compile (dynamo fails on ConfigDict).
        optimizer = wrapper.optimizer
        optimizer.param_groups = [dict(group) for group in optimizer.param_groups]
        return wrapper

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module: Optional[Union[int, float]] = None) -> None:
        super().add_params(params, module, prefix, is_dcn_module)
        if not prefix:  # the top call, not a recursive one: it sees every group
            self.finish_groups(params)

    def finish_groups(self, params: List[dict]) -> None:
        """Our rules, applied to mmengine's groups (one parameter each) once all are made."""
        for group in params:
            if any(id(p) in self._no_decay for p in group['params']):
                group['weight_decay'] = 0.


# The parameters under the backbone at layer 0: XCiT's patch_embed and pos_embed, CrossViT's
# patch_embed, pos_embed_{0,1} and cls_token_{0,1} (the first part of the name).
_STEM = re.compile(r'(patch_embed|pos_embed|cls_token)(_\d+)?')
_BLOCK = re.compile(r'blocks\.(\d+)\.')


def layer_id(name: str, num_layers: int) -> int:
    """The layer of a parameter for layer-wise learning-rate decay, from its name in the
    detector or segmentor (``backbone.blocks.3.attn.qkv.weight``) and the backbone's number of
    blocks ``num_layers``: 0 for the backbone's ``patch_embed``, ``pos_embed`` and
    ``cls_token`` (CrossViT's ``_0``/``_1`` included), ``i + 1`` for ``backbone.blocks.i`` (an
    XCiT block, a CrossViT multi-scale block), and the top layer ``num_layers + 1`` for
    everything else (the pyramid, the neck, the heads), as mmseg's and ViTDet's rules number
    them. The rule is keyed on these name prefixes only, so it serves XCiT and CrossViT
    alike."""
    top = num_layers + 1
    if not name.startswith('backbone.'):
        return top
    rest = name[len('backbone.'):]
    if _STEM.fullmatch(rest.split('.', 1)[0]):
        return 0
    block = _BLOCK.match(rest)
    return int(block.group(1)) + 1 if block else top


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class LayerDecayOptimWrapperConstructor(NoDecayOptimWrapperConstructor):
    """Layer-wise learning-rate decay on top of :class:`NoDecayOptimWrapperConstructor` (so
    mmengine's ``paramwise_cfg`` rules and the backbone's ``no_weight_decay()`` still set the
    weight decay): each parameter's learning rate is ::

        lr = base_lr * lr_mult * decay_rate ** (num_layers + 1 - layer_id)

    where ``lr_mult`` is what mmengine's rules already gave it (``custom_keys``,
    ``bias_lr_mult``; 1 otherwise) and ``layer_id`` is :func:`layer_id`: 0 for the patch
    embedding and positional encoding (CrossViT: also the class tokens), ``i + 1`` for block
    ``i``, ``num_layers + 1`` for the pyramid, neck and heads, which keep ``base_lr``.

    ``num_layers`` is the number of blocks the backbone has (``len(backbone.blocks)``: 12 for
    a 12-block XCiT, 24 for a 24-block one, 3 for CrossViT; a backbone whose ``out_indices``
    end early builds fewer blocks, and the count is of the blocks it has), as mmseg's
    ``LearningRateDecayOptimizerConstructor`` and ViTDet (detectron2's
    ``get_vit_lr_decay_rate``, mmdet's ViTDet project) count it, with their formula: their
    ``num_layers=12`` for ViT-B is ours for a 12-block XCiT. (mmdet's ViTDet project puts its
    heads at layer 11, one below the last block, ``decay_rate ** 2``: we do not follow that.)
    The blocks + 1 (13 for 12 blocks), which this constructor asked for before, is read as
    the blocks with a ``DeprecationWarning`` (the learning rates are the same); any other value
    is an error naming the expected one. ``decay_rate`` must be in (0, 1] (1: no decay). Only
    ``decay_type='layer_wise'`` exists::

        optim_wrapper = dict(constructor='LayerDecayOptimWrapperConstructor',
                             paramwise_cfg=dict(norm_decay_mult=0., decay_rate=0.7,
                                                num_layers=12))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.decay_rate = self.paramwise_cfg.get('decay_rate')
        if not (_is_number(self.decay_rate) and 0 < self.decay_rate <= 1):
            raise ValueError('paramwise_cfg.decay_rate must be a number in (0, 1], '
                             f'got {self.decay_rate!r}')
        decay_type = self.paramwise_cfg.get('decay_type', 'layer_wise')
        if decay_type != 'layer_wise':
            raise ValueError(f"paramwise_cfg.decay_type must be 'layer_wise', got {decay_type!r}")

    def check_num_layers(self, model: nn.Module) -> int:
        """``paramwise_cfg.num_layers``, checked against the model's backbone: its number of
        blocks. The blocks + 1 (this constructor's former convention) is read as the blocks,
        with a ``DeprecationWarning``."""
        backbone = getattr(model, 'backbone', None)
        blocks = getattr(backbone, 'blocks', None)
        if not isinstance(blocks, nn.ModuleList):
            raise TypeError(f'{type(self).__name__} needs a backbone with blocks (XCiT, '
                            f'CrossViT), got {type(backbone).__name__}')
        expected, num_layers = len(blocks), self.paramwise_cfg.get('num_layers')
        valid = isinstance(num_layers, int) and not isinstance(num_layers, bool)
        if valid and num_layers == expected + 1:
            message = (f'paramwise_cfg.num_layers={num_layers} counts the '
                       f"{type(backbone).__name__}'s {expected} blocks + 1, which "
                       f'{type(self).__name__} no longer asks for: write '
                       f'num_layers={expected} (the blocks, as mmseg and ViTDet count them); '
                       'the learning rates are the same.')
            warnings.warn(message, DeprecationWarning)
            # Python hides DeprecationWarnings raised outside __main__: the run's log says it
            print_log(message, logger='current', level=logging.WARNING)
            return expected
        if not valid or num_layers != expected:
            raise ValueError(
                f'paramwise_cfg.num_layers must be {expected} for this {type(backbone).__name__}'
                f' (its number of blocks: layer 0 is the patch embedding, block i is layer '
                f'i + 1, the pyramid, neck and heads are layer {expected + 1}), got '
                f'{num_layers!r}')
        return num_layers

    def __call__(self, model: nn.Module) -> OptimWrapper:
        inner = getattr(model, 'module', model)
        num_layers = self.check_num_layers(inner)
        self._lr_scales = {
            id(p): self.decay_rate ** (num_layers + 1 - layer_id(n, num_layers))
            for n, p in inner.named_parameters()}
        return super().__call__(model)

    def finish_groups(self, params: List[dict]) -> None:
        super().finish_groups(params)
        for group in params:  # mmengine's paramwise groups: one parameter each
            scale = self._lr_scales[id(group['params'][0])]
            group['lr'] = group.get('lr', self.base_lr) * scale


def format_param_groups(model: nn.Module, optimizer: torch.optim.Optimizer,
                        per_parameter: bool = False) -> str:
    """A table of the learning rate and weight decay the optimizer gives ``model``'s
    parameters: one row per parameter (``per_parameter``), or per part of the model (each
    backbone block, the backbone's other top-level modules, the neck, each head) and setting,
    with the number of parameters and the lr relative to the optimizer's base lr."""
    setting = {id(p): (g['lr'], g['weight_decay']) for g in optimizer.param_groups
               for p in g['params']}
    base_lr = optimizer.defaults['lr']
    rows, frozen = {}, 0
    for name, param in model.named_parameters():
        if id(param) not in setting:
            frozen += 1
            continue
        parts = name.split('.')
        depth = 3 if parts[:2] == ['backbone', 'blocks'] else 2 if parts[0] == 'backbone' else 1
        part = name if per_parameter else '.'.join(parts[:depth])
        rows.setdefault((part, *setting[id(param)]), []).append(name)
    base_wd = optimizer.defaults.get('weight_decay', 0)
    lines = [f'base lr {base_lr:.4g}, weight decay {base_wd:.4g}; '
             f'{len(setting)} parameters in {len(optimizer.param_groups)} groups'
             + (f', {frozen} frozen (not in the optimizer)' if frozen else ''),
             f'{"lr":>11} {"lr/base":>8} {"wd":>7} {"params":>6}  part']
    for (part, lr, wd), names in rows.items():
        scale = lr / base_lr if base_lr else float('nan')
        lines.append(f'{lr:11.4e} {scale:8.4f} {wd:7.4g} {len(names):6d}  {part}')
    return '\n'.join(lines)
