"""Optimizer construction: the backbone says which of its parameters take no weight decay."""
from typing import List, Optional, Set, Union

import torch.nn as nn
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
        return super().__call__(model)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module: Optional[Union[int, float]] = None) -> None:
        super().add_params(params, module, prefix, is_dcn_module)
        if prefix:  # a recursive call: the top one (prefix '') sees every group
            return
        for group in params:
            if any(id(p) in self._no_decay for p in group['params']):
                group['weight_decay'] = 0.
