"""What the dense backbones share: pretrained loading, checkpoint conversion on every load
path, frozen stages, input padding, and ``forward = pyramid(trunk(x))``."""
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from ..checkpoint import (CheckpointFamily, adapt_loaded_state, load_init_cfg,
                          pretrained_to_init_cfg)


class DenseBackbone(nn.Module):
    """Base class of :class:`~xcit_dense.XCiT` and :class:`~xcit_dense.CrossViT`.

    Subclasses set :attr:`checkpoints` (their checkpoint formats) and ``pad_multiple``, build
    a ``pyramid`` and implement :meth:`forward_trunk` (the transformer's maps, before the
    pyramid), :meth:`frozen_parts` and :meth:`imagenet_url`.

    Args:
        frozen_stages: -1 trains everything; 0 freezes the embeddings; k > 0 also freezes the
            first k blocks (see each subclass).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL)``, loaded by
            :meth:`init_weights` in any format the family reads; ``checkpoint='imagenet'`` is
            the family's ImageNet checkpoint of this preset (:meth:`imagenet_url`).
        pretrained: Deprecated alias of ``init_cfg=dict(type='Pretrained',
            checkpoint=pretrained)`` (mmseg's convention for its backbones).
    """

    checkpoints: CheckpointFamily
    pad_multiple: int
    pyramid: nn.Module

    def __init__(self, frozen_stages: int, init_cfg: Optional[Dict],
                 pretrained: Optional[str]) -> None:
        super().__init__()
        self.frozen_stages = frozen_stages
        self.init_cfg = pretrained_to_init_cfg(pretrained, init_cfg, type(self).__name__)

    @staticmethod
    def _init_linear(m: nn.Module) -> None:
        """timm's initialisation of the transformer's linear layers."""
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def imagenet_url(self) -> str:
        """URL of the ImageNet checkpoint of this preset (``checkpoint='imagenet'``)."""
        raise NotImplementedError

    def init_weights(self) -> None:
        """Load ``init_cfg``'s pretrained checkpoint, if any (called by mmengine's runner)."""
        init_cfg = self.init_cfg
        if init_cfg is not None and init_cfg.get('checkpoint') == 'imagenet':
            init_cfg = dict(init_cfg, checkpoint=self.imagenet_url())
        load_init_cfg(self, init_cfg, self.checkpoints)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Every load path (torch's and mmengine's load_state_dict, so load_from, tools/test.py
        # and the inferencers) passes here: convert any checkpoint format's keys, and refuse to
        # leave part of the backbone at its initialisation when a whole model is loaded.
        adapt_loaded_state(self, state_dict, prefix, self.checkpoints)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def frozen_parts(self) -> List[Union[nn.Module, nn.Parameter]]:
        """The modules and parameters ``frozen_stages`` freezes."""
        raise NotImplementedError

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        for part in self.frozen_parts():
            if isinstance(part, nn.Parameter):
                part.requires_grad = False
                continue
            part.eval()
            for param in part.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'DenseBackbone':
        super().train(mode)
        self._freeze_stages()  # keep frozen modules (BatchNorm, drop path) in eval mode
        return self

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        """Names of the parameters (or of modules, for all their parameters) that take no
        weight decay, relative to the backbone; read by
        :class:`~xcit_dense.engine.optim.NoDecayOptimWrapperConstructor`."""
        return set()

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        """Check an image batch and pad it at the bottom and right to a multiple of
        ``pad_multiple``."""
        if x.dim() != 4:
            raise ValueError(f'{type(self).__name__} expects a (B, C, H, W) image batch, got '
                             f'shape {tuple(x.shape)}')
        m = self.pad_multiple
        pad_h, pad_w = -x.shape[2] % m, -x.shape[3] % m
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def forward_trunk(self, x: torch.Tensor) -> Sequence[torch.Tensor]:
        """The transformer's NCHW maps that feed the pyramid."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Return NCHW maps with strides ``out_strides`` and ``out_channels`` channels."""
        return tuple(y.contiguous() for y in self.pyramid(self.forward_trunk(x)))
