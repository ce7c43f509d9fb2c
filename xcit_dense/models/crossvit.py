"""CrossViT backbone for dense prediction.

CrossViT: Cross-Attention Multi-Scale Vision Transformer for Image Classification (Chen, Fan,
Panda, ICCV 2021), https://arxiv.org/abs/2103.14899. Two ViT branches, on small (12 px) and
large (16 px) patches, exchange information once per multi-scale block: each branch's class
token attends over the other branch's patch tokens. Parameter names follow timm's
``CrossVit`` (``patch_embed.{0,1}``, ``pos_embed_{0,1}``, ``cls_token_{0,1}``, ``blocks.N``),
whose ``MultiScaleBlock`` this module reuses, so timm checkpoints load as they are; the other
formats are converted by :mod:`xcit_dense.checkpoint.crossvit`.

Only torch and timm are needed here; OpenMMLab registration lives in ``xcit_dense.registry``.
"""
import math
from functools import partial
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed, trunc_normal_
from timm.models.crossvit import MultiScaleBlock

from ..checkpoint import CROSSVIT_CHECKPOINTS
from .base import DenseBackbone
from .pyramid import PYRAMID_STRIDES, BranchPyramid

# Published variants (CrossViT paper, Table 2; timm ``crossvit_*``): branch widths, depths per
# multi-scale block (small branch, large branch, extra fusion layers), heads and MLP ratios
# per branch, multi-conv patch embedding (the dagger models), the grids of the checkpoints'
# position embeddings (timm's 240 models: 240 / 12 and 224 / 16; 408: 408 / 12 and 384 / 16)
# and the CrossViT release's ImageNet checkpoint (IMAGENET_URL; timm's 240 and 408 models are
# its 224 and 384 ones). timm's third MLP ratio is unused by its fusion layers and is left out.
_TINY = dict(embed_dim=(96, 192), depth=((1, 4, 0),) * 3, num_heads=(3, 3), mlp_ratio=(4., 4.))
_SMALL = dict(embed_dim=(192, 384), depth=((1, 4, 0),) * 3, num_heads=(6, 6), mlp_ratio=(4., 4.))
_BASE = dict(embed_dim=(384, 768), depth=((1, 4, 0),) * 3, num_heads=(12, 12), mlp_ratio=(4., 4.))
_9 = dict(embed_dim=(128, 256), depth=((1, 3, 0),) * 3, num_heads=(4, 4), mlp_ratio=(3., 3.))
_15 = dict(embed_dim=(192, 384), depth=((1, 5, 0),) * 3, num_heads=(6, 6), mlp_ratio=(3., 3.))
_18 = dict(embed_dim=(224, 448), depth=((1, 6, 0),) * 3, num_heads=(7, 7), mlp_ratio=(3., 3.))
ARCH_ZOO: Dict[str, Dict] = {
    'tiny': dict(_TINY, multi_conv=False, pos_grids=(20, 14), imagenet='tiny_224'),
    'small': dict(_SMALL, multi_conv=False, pos_grids=(20, 14), imagenet='small_224'),
    'base': dict(_BASE, multi_conv=False, pos_grids=(20, 14), imagenet='base_224'),
    '9': dict(_9, multi_conv=False, pos_grids=(20, 14), imagenet='9_224'),
    '15': dict(_15, multi_conv=False, pos_grids=(20, 14), imagenet='15_224'),
    '18': dict(_18, multi_conv=False, pos_grids=(20, 14), imagenet='18_224'),
    '9_dagger': dict(_9, multi_conv=True, pos_grids=(20, 14), imagenet='9_dagger_224'),
    '15_dagger': dict(_15, multi_conv=True, pos_grids=(20, 14), imagenet='15_dagger_224'),
    '18_dagger': dict(_18, multi_conv=True, pos_grids=(20, 14), imagenet='18_dagger_224'),
    '15_dagger_408': dict(_15, multi_conv=True, pos_grids=(34, 24), imagenet='15_dagger_384'),
    '18_dagger_408': dict(_18, multi_conv=True, pos_grids=(34, 24), imagenet='18_dagger_384'),
}
IMAGENET_URL = 'https://github.com/IBM/CrossViT/releases/download/weights-0.1/crossvit_{}.pth'
# The patch sizes of the two branches, fixed by the checkpoints' patch embeddings.
BRANCH_PATCH_SIZES = (12, 16)
# Strides the two branches' patch embeddings can run at: (8, 16) gives the pyramid exact
# powers of two; (12, 16) is timm's non-overlapping patches.
PATCH_STRIDES = ((8, 16), (12, 16))


def resolve_crossvit_arch(arch: Union[str, Dict]) -> Dict:
    """Return the architecture dict of a preset (``'18_dagger'``, or timm's model name
    ``'crossvit_18_dagger_240'``) or of a custom dict."""
    if isinstance(arch, dict):
        missing = {'embed_dim', 'depth', 'num_heads', 'mlp_ratio'} - set(arch)
        if missing:
            raise KeyError(f'Custom CrossViT arch is missing {sorted(missing)}; it needs '
                           'embed_dim, depth, num_heads, mlp_ratio and optionally multi_conv '
                           'and pos_grids')
        return dict(dict(multi_conv=False, pos_grids=(20, 14)), **arch)
    name = arch[len('crossvit_'):] if arch.startswith('crossvit_') else arch
    name = name[:-len('_240')] if name.endswith('_240') else name
    if name not in ARCH_ZOO:
        raise KeyError(f'Unknown CrossViT arch {arch!r}; valid names are {sorted(ARCH_ZOO)} '
                       "(or timm's names, e.g. 'crossvit_18_dagger_240'), or a dict with "
                       'embed_dim, depth, num_heads and mlp_ratio')
    return dict(ARCH_ZOO[name])


class PatchEmbed(nn.Module):
    """timm's CrossViT patch embedding (same parameter names) at a chosen stride.

    A linear embedding is one ``patch_size`` x ``patch_size`` convolution; at a stride below
    the patch size the patches overlap and are padded so that each is centred on its
    stride x stride cell. The multi-conv embedding (the dagger models) is a 7x7 stride-4 conv
    and two 3x3 convs with ReLUs: for 12 px they stride 3 and 1, for 16 px 2 and 2; at stride
    8 the 12-px stem's middle conv strides 2 (padding 1) as in the 16-px stem, with the same
    weights.
    """

    def __init__(self, patch_size: int, stride: int, in_chans: int, embed_dim: int,
                 multi_conv: bool) -> None:
        super().__init__()
        if (patch_size, stride) not in ((12, 12), (12, 8), (16, 16)):
            raise ValueError(f'A {patch_size}-px CrossViT patch embedding cannot run at '
                             f'stride {stride}')
        if not multi_conv:
            self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=stride,
                                  padding=(patch_size - stride) // 2)
            return
        # (stride, padding) of the two 3x3 convs after the stride-4 7x7 conv
        second, third = {12: ((3, 0), (1, 1)), 8: ((2, 1), (1, 1)), 16: ((2, 1), (2, 1))}[stride]
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, embed_dim // 4, kernel_size=7, stride=4, padding=3),
            nn.ReLU(inplace=True),
            nn.Conv2d(embed_dim // 4, embed_dim // 2, 3, stride=second[0], padding=second[1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(embed_dim // 2, embed_dim, 3, stride=third[0], padding=third[1]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class BranchBlocks(nn.Module):
    """The last multi-scale block without its fusion (timm's ``blocks.N.blocks`` names).

    The fusion only updates the class tokens, which the pyramid does not read: without it no
    parameter is left without a gradient (DDP needs none unused) and no work is wasted.
    """

    def __init__(self, block: MultiScaleBlock) -> None:
        super().__init__()
        self.blocks = block.blocks

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        return [branch(x) for branch, x in zip(self.blocks, xs)]


class CrossViT(DenseBackbone):
    """CrossViT backbone with a pyramid of up to four levels (strides 4, 8, 16, 32).

    The pyramid adapter. timm's CrossViT runs the 12-px branch on the 240 px image (a 20 x 20
    grid, stride 12) and the 16-px branch on the image resized to 224 (14 x 14, stride
    240 / 14 = 17.1): neither stride is a power-of-two multiple of 4, and resizing one
    branch's input serves no purpose once position embeddings are interpolated. Here both
    branches see the image at its own scale, and by default the small-patch embedding runs at
    stride 8 instead of 12: the same pretrained 12 x 12 patches (a token covers as many pixels
    as in pretraining, and the checkpoint loads unchanged), taken every 8 px. The branches then
    sit at strides 8 and 16, exactly one octave apart, and the pyramid needs no fractional
    resampling: stride 4 = 2x2 transposed conv of the small-patch branch, 8 = that branch,
    16 = the large-patch branch, 32 = its 2x2 max-pool, like the XCiT release's adapters.

    Fine levels come from the shallow small-patch branch and coarse ones from the deep
    large-patch branch, as C2/C3 and C4/C5 in a ResNet: FPN's top-down path adds the deep
    features to the fine levels, and the small branch has already seen the large one through
    the class tokens of the fusions. Both maps are the last multi-scale block's patch tokens;
    that block's fusion, which would only update the class tokens, is left out. Each level
    ends with a norm (``norm_cfg``), since the maps are raw residual streams of two branches of
    different widths and scales (timm's final LayerNorms belong to the classifier).

    The cost: at stride 8 the small branch has 2.25x the tokens of stride 12, under global
    attention. ``patch_strides=(12, 16)`` keeps timm's non-overlapping 12-px patches (cheaper;
    at 240 x 240 both branches' maps are timm's, without its 224 resize): stride 4 is then a
    3x3 stride-3 transposed conv of the small branch, stride 8 the same max-pooled by 2.

    Args:
        arch: A preset name (``'tiny'``, ``'small'``, ``'base'``, ``'9'``, ``'15'``,
            ``'18'``, ``'9_dagger'``, ``'15_dagger'``, ``'18_dagger'``, ``'15_dagger_408'``,
            ``'18_dagger_408'``, or timm's model names) or a dict with ``embed_dim``,
            ``depth``, ``num_heads``, ``mlp_ratio`` and optionally ``multi_conv`` and
            ``pos_grids``.
        patch_strides: Strides of the small- and large-patch embeddings, ``(8, 16)`` or
            ``(12, 16)``.
        out_strides: The pyramid levels to return, an ascending selection of (4, 8, 16, 32)
            (e.g. ``(8, 16, 32)`` for DETR-style or RTMDet necks); levels not asked for are
            neither built nor computed.
        in_chans: Input image channels.
        drop_path_rate: Stochastic depth rate, rising linearly over the blocks as in timm.
        norm_cfg: Norm of the pyramid levels (``BN``, ``SyncBN``, ``GN``).
        frozen_stages: -1 trains everything; 0 freezes the patch and position embeddings and
            the class tokens; k > 0 also freezes the first k multi-scale blocks.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads an ImageNet or
            dense checkpoint in any format
            :func:`~xcit_dense.checkpoint.load_crossvit_checkpoint` reads;
            ``checkpoint='imagenet'`` is the CrossViT release's ImageNet checkpoint of this
            preset (:data:`IMAGENET_URL`).
        pretrained: Deprecated alias of ``init_cfg=dict(type='Pretrained',
            checkpoint=pretrained)`` (mmseg's convention for its backbones).

    Inputs of any size work: they are padded at the bottom and right to H' x W', the next
    multiple of both branch strides (16, or 48 for ``(12, 16)``), the position embeddings are
    interpolated to each branch's grid, and the map at stride ``s`` has ``ceil(H' / s)`` x
    ``ceil(W' / s)`` pixels.

    Attributes:
        out_channels: Channels of each output map (the small-branch width at strides 4 and 8,
            the large-branch width at 16 and 32).
        out_strides: Stride of each output map.
    """

    checkpoints = CROSSVIT_CHECKPOINTS

    def __init__(self,
                 arch: Union[str, Dict] = '18_dagger',
                 patch_strides: Sequence[int] = (8, 16),
                 out_strides: Sequence[int] = PYRAMID_STRIDES,
                 in_chans: int = 3,
                 drop_path_rate: float = 0.,
                 norm_cfg: Dict = dict(type='BN'),
                 frozen_stages: int = -1,
                 init_cfg: Optional[Dict] = None,
                 pretrained: Optional[str] = None) -> None:
        super().__init__(frozen_stages, init_cfg, pretrained)
        arch_cfg = resolve_crossvit_arch(arch)
        patch_strides = tuple(int(s) for s in patch_strides)
        if patch_strides not in PATCH_STRIDES:
            raise ValueError(f'CrossViT patch_strides must be one of {PATCH_STRIDES}, '
                             f'got {patch_strides}')
        embed_dim, depth = tuple(arch_cfg['embed_dim']), tuple(map(tuple, arch_cfg['depth']))
        if not -1 <= frozen_stages <= len(depth):
            raise ValueError(f'frozen_stages must be in [-1, {len(depth)}], got {frozen_stages}')

        self.arch = arch_cfg
        self.arch_name: Optional[str] = None if isinstance(arch, dict) else arch
        self.embed_dim = embed_dim
        self.patch_strides = patch_strides
        self.pos_grids: Tuple[int, ...] = tuple(arch_cfg['pos_grids'])
        self.pad_multiple = math.lcm(*patch_strides)  # both grids tile the padded image

        self.patch_embed = nn.ModuleList([
            PatchEmbed(p, s, in_chans, d, arch_cfg['multi_conv'])
            for p, s, d in zip(BRANCH_PATCH_SIZES, patch_strides, embed_dim)])
        for i, (d, g) in enumerate(zip(embed_dim, self.pos_grids)):
            setattr(self, f'pos_embed_{i}', nn.Parameter(torch.zeros(1, 1 + g * g, d)))
            setattr(self, f'cls_token_{i}', nn.Parameter(torch.zeros(1, 1, d)))

        # timm's stochastic depth: linear over the large branch and fusion layers, each block
        # taking its slice (the small branch reuses the first rates of that slice).
        rates = torch.linspace(0, drop_path_rate, sum(sum(c[-2:]) for c in depth)).tolist()
        self.blocks = nn.ModuleList()
        start = 0
        for cfg in depth:
            length = max(cfg[:-1]) + cfg[-1]
            self.blocks.append(MultiScaleBlock(
                embed_dim, [g * g for g in self.pos_grids], cfg,
                num_heads=arch_cfg['num_heads'], mlp_ratio=arch_cfg['mlp_ratio'], qkv_bias=True,
                drop_path=rates[start:start + length],
                norm_layer=partial(nn.LayerNorm, eps=1e-6)))
            start += length
        self.blocks[-1] = BranchBlocks(self.blocks[-1])
        self.pyramid = BranchPyramid(embed_dim, patch_strides, out_strides, norm_cfg)
        self.out_channels: Tuple[int, ...] = self.pyramid.out_channels
        self.out_strides: Tuple[int, ...] = self.pyramid.out_strides

        for i in range(len(embed_dim)):
            trunc_normal_(getattr(self, f'pos_embed_{i}'), std=.02)
            trunc_normal_(getattr(self, f'cls_token_{i}'), std=.02)
        self.blocks.apply(self._init_linear)
        self._freeze_stages()

    def imagenet_url(self) -> str:
        """URL of the CrossViT release's ImageNet checkpoint of this preset."""
        if self.arch_name is None:
            raise ValueError("checkpoint='imagenet' needs a preset arch, not a custom dict")
        return IMAGENET_URL.format(self.arch['imagenet'])

    def frozen_parts(self) -> List[Union[nn.Module, nn.Parameter]]:
        return [self.patch_embed, *self.blocks[:self.frozen_stages],
                *(getattr(self, f'{p}_{i}') for p in ('pos_embed', 'cls_token')
                  for i in range(len(self.embed_dim)))]

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        """The position embeddings and class tokens of both branches."""
        return {f'{p}_{i}' for p in ('pos_embed', 'cls_token') for i in range(len(self.embed_dim))}

    def forward_branches(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Patch tokens of each branch after the last multi-scale block, as (B, C_b, H_b, W_b)
        maps at strides ``patch_strides`` (before the pyramid)."""
        x = self._padded(x)
        B = x.shape[0]
        tokens, grids = [], []
        for i, (embed, grid) in enumerate(zip(self.patch_embed, self.pos_grids)):
            y = embed(x)
            H, W = y.shape[-2:]
            cls_token = getattr(self, f'cls_token_{i}').expand(B, -1, -1)
            pos_embed = resample_abs_pos_embed(getattr(self, f'pos_embed_{i}'), [H, W],
                                               old_size=[grid, grid], num_prefix_tokens=1)
            tokens.append(torch.cat((cls_token, y.flatten(2).transpose(1, 2)), dim=1)
                          + pos_embed)
            grids.append((H, W))
        for block in self.blocks:
            tokens = block(tokens)
        return [t[:, 1:].transpose(1, 2).reshape(B, -1, H, W)
                for t, (H, W) in zip(tokens, grids)]

    forward_trunk = forward_branches
