"""XCiT backbone for dense prediction.

XCiT: Cross-Covariance Image Transformers (El-Nouby et al., NeurIPS 2021),
https://arxiv.org/abs/2106.09681. Parameter names follow timm's ``Xcit`` (``pos_embed``,
``blocks.N.attn``, ``blocks.N.local_mp``, ...) so timm checkpoints load as they are; the
other formats are converted by :mod:`xcit_dense.checkpoint`.

Tokens stay in (B, N, C) layout, which is NHWC memory: LPI runs its depthwise convolutions on
a channels-last view and the output maps are views, so no block transposes its input.
Only torch and timm are needed here; OpenMMLab registration lives in ``xcit_dense.registry``.
"""
import math
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp

from ..checkpoint import XCIT_CHECKPOINTS
from .base import DenseBackbone
from .norm import build_norm_layer
from .pyramid import PYRAMID_STRIDES, SimplePyramid, check_out_strides
from .recompute import checkpoint_products
from .streaming import StreamedBlock, StreamedStem, can_stream

# Published variants (XCiT paper, Table 1; timm ``xcit_*``): width, depth, heads, LayerScale
# eta, and the stochastic depth rate of the release's detection and segmentation models, the
# same at patch sizes 8 and 16 (its Semantic FPN M24 alone takes 0.2: set in those configs).
# The release has no dense N12, T24 or L24 model: those rates are 0. Each preset's ImageNet
# checkpoint, per patch size, is IMAGENET_URL.
ARCH_ZOO: Dict[str, Dict] = {
    'nano_12': dict(embed_dim=128, depth=12, num_heads=4, eta=1.0, drop_path_rate=0.),
    'tiny_12': dict(embed_dim=192, depth=12, num_heads=4, eta=1.0, drop_path_rate=0.),
    'tiny_24': dict(embed_dim=192, depth=24, num_heads=4, eta=1e-5, drop_path_rate=0.),
    'small_12': dict(embed_dim=384, depth=12, num_heads=8, eta=1.0, drop_path_rate=0.05),
    'small_24': dict(embed_dim=384, depth=24, num_heads=8, eta=1e-5, drop_path_rate=0.1),
    'medium_24': dict(embed_dim=512, depth=24, num_heads=8, eta=1e-5, drop_path_rate=0.15),
    'large_24': dict(embed_dim=768, depth=24, num_heads=16, eta=1e-5, drop_path_rate=0.),
}
# Short names, as in config file names (``xcit-s12-p8``).
ARCH_ALIASES = {'n12': 'nano_12', 't12': 'tiny_12', 't24': 'tiny_24', 's12': 'small_12',
                's24': 'small_24', 'm24': 'medium_24', 'l24': 'large_24'}
# Blocks whose outputs feed the pyramid, by depth, as in the release's dense configs.
DEFAULT_OUT_INDICES = {12: (3, 5, 7, 11), 24: (7, 11, 15, 23)}
PATCH_SIZES = (8, 16)
# The release's ImageNet-1k checkpoint of each preset and patch size that its dense models are
# trained from (384 px, distilled); ``init_cfg=dict(type='Pretrained', checkpoint='imagenet')``
# loads it.
IMAGENET_URL = 'https://dl.fbaipublicfiles.com/xcit/xcit_{arch}_p{patch_size}_384_dist.pth'


def resolve_arch(arch: Union[str, Dict]) -> Dict:
    """Return the architecture dict of a preset name (``'small_12'`` or ``'s12'``) or a dict."""
    if isinstance(arch, dict):
        missing = {'embed_dim', 'depth', 'num_heads'} - set(arch)
        if missing:
            raise KeyError(f'Custom XCiT arch is missing {sorted(missing)}; '
                           'it needs embed_dim, depth, num_heads and optionally eta')
        return {'eta': 1.0, 'drop_path_rate': 0., **arch}
    name = ARCH_ALIASES.get(arch, arch)
    if name not in ARCH_ZOO:
        raise KeyError(f'Unknown XCiT arch {arch!r}; valid names are {sorted(ARCH_ZOO)} '
                       f'(or {sorted(ARCH_ALIASES)}), or a dict with embed_dim, depth, '
                       'num_heads and eta')
    return dict(ARCH_ZOO[name])


class PositionalEncodingFourier(nn.Module):
    """Fourier positional encoding for any grid size, projected to ``dim`` channels."""

    def __init__(self, hidden_dim: int = 32, dim: int = 768, temperature: float = 10000.) -> None:
        super().__init__()
        self.token_projection = nn.Conv2d(hidden_dim * 2, dim, kernel_size=1)
        self.hidden_dim = hidden_dim
        self.temperature = temperature

    def forward(self, H: int, W: int) -> torch.Tensor:
        """Return the encoding of an H x W grid as (H, W, dim), i.e. token layout."""
        weight = self.token_projection.weight
        device = weight.device
        eps, scale = 1e-6, 2 * math.pi
        y = torch.arange(1, H + 1, device=device, dtype=torch.float32) / (H + eps) * scale
        x = torch.arange(1, W + 1, device=device, dtype=torch.float32) / (W + eps) * scale
        dim_t = torch.arange(self.hidden_dim, device=device, dtype=torch.float32)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode='floor')
                                     / self.hidden_dim)
        pos_y = (y[:, None] / dim_t).view(H, -1, 2)
        pos_x = (x[:, None] / dim_t).view(W, -1, 2)
        pos_y = torch.stack((pos_y[..., 0].sin(), pos_y[..., 1].cos()), dim=-1).flatten(1)
        pos_x = torch.stack((pos_x[..., 0].sin(), pos_x[..., 1].cos()), dim=-1).flatten(1)
        pos = torch.cat((pos_y[:, None].expand(H, W, -1), pos_x[None].expand(H, W, -1)), dim=-1)
        # The 1x1 conv as a linear layer on the (H, W, 2 * hidden) grid.
        return F.linear(pos.to(weight.dtype), weight.flatten(1), self.token_projection.bias)


class ConvPatchEmbed(StreamedStem, nn.Module):
    """Patch embedding by a stack of stride-2 3x3 conv-norm layers with GELU in between.

    CPU inference streams large images through it in bands of rows
    (:class:`~xcit_dense.models.streaming.StreamedStem`).
    """

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 norm_cfg: Dict = dict(type='BN')) -> None:
        super().__init__()
        if patch_size not in PATCH_SIZES:
            raise ValueError(f'XCiT patch_size must be one of {PATCH_SIZES}, got {patch_size}')
        self.patch_size = patch_size
        num_convs = int(math.log2(patch_size))
        widths = [in_chans] + [embed_dim // 2 ** i for i in reversed(range(num_convs))]
        layers: List[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            if i:
                layers.append(nn.GELU())
            layers.append(nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False),
                build_norm_layer(norm_cfg, c_out)))
        self.proj = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H/p, W/p) embeddings of a (B, in_chans, H, W) image, H and W multiples of p."""
        tokens = (x.shape[2] // self.patch_size) * (x.shape[3] // self.patch_size)
        if tokens > self.BAND_TOKENS and can_stream(self, x):
            return self.forward_streamed(x)
        return self.proj(x)


class XCA(nn.Module):
    """Cross-covariance attention: softmax over the d x d cross-covariance of L2-normalised
    queries and keys (per head, with a learned temperature), mixing channels, not tokens.

    The normalisation is applied to the small d x d Gram matrix rather than to q and k, and the
    attention matrix is folded into the output projection, so ``attn @ v`` and its transposes
    never materialise: the output is one batched matmul of v with a C x C matrix per image.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'XCA dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def attention(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Softmax-normalised cross-covariance (B, heads, d, d) of token-layout q, k (B, N, C).

        Computed in fp32 even under autocast: the un-normalised Gram sums over all N tokens
        and would overflow fp16 at detection resolutions.
        """
        B, N, C = q.shape
        h = self.num_heads
        with torch.autocast(q.device.type, enabled=False):
            qh = q.float().unflatten(-1, (h, C // h)).transpose(1, 2)  # (B, h, N, d)
            kh = k.float().unflatten(-1, (h, C // h)).transpose(1, 2)
            gram = qh.transpose(-2, -1) @ kh  # (B, h, d, d)
            q_norm = torch.linalg.vector_norm(qh, dim=-2)  # (B, h, d)
            k_norm = torch.linalg.vector_norm(kh, dim=-2)
            return self.normalized_softmax(gram, q_norm, k_norm)

    def normalized_softmax(self, gram: torch.Tensor, q_norm: torch.Tensor,
                           k_norm: torch.Tensor) -> torch.Tensor:
        """Attention from the Gram q^T k (..., h, d, d) and the token-norms of q and k
        (..., h, d): as if q and k had been L2-normalised over the tokens first."""
        # F.normalize divides by max(||q||, eps): applied to the Gram, not to q and k.
        q_norm, k_norm = q_norm.clamp_min(1e-12), k_norm.clamp_min(1e-12)
        attn = gram / (q_norm.unsqueeze(-1) * k_norm.unsqueeze(-2)) * self.temperature
        return attn.softmax(dim=-1)

    def mix(self, attn: torch.Tensor) -> torch.Tensor:
        """The attention (..., h, d, d) folded into the output projection: a (..., C, C)
        matrix M with ``out = v @ M + bias``."""
        # out[n, o] = sum_{h,i} W[o, (h,i)] sum_j attn[h,i,j] v[n, (h,j)] = v[n] @ M, where
        # M[(h,j), o] = sum_i attn[h,i,j] W[o, (h,i)].
        C = self.proj.weight.shape[0]
        w = self.proj.weight.view(C, self.num_heads, C // self.num_heads)
        mix = torch.einsum('...hij,ohi->...hjo', attn, w.to(attn.dtype))
        return mix.reshape(*attn.shape[:-3], C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C = x.shape[-1]
        q, k, v = self.qkv(x).split(C, dim=-1)
        mix = self.mix(self.attention(q, k))
        return torch.baddbmm(self.proj.bias.to(v.dtype), v, mix.to(v.dtype))

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {'temperature'}


class LPI(nn.Module):
    """Local Patch Interaction: depthwise 3x3 conv, GELU, norm, depthwise 3x3 conv.

    Runs on a channels-last view of the (B, N, C) tokens, so no transpose is copied.
    """

    def __init__(self, dim: int, norm_cfg: Dict = dict(type='BN')) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.act = nn.GELU()
        self.bn = build_norm_layer(norm_cfg, dim)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        x = x.view(B, H, W, C).permute(0, 3, 1, 2)  # NCHW shape, channels-last memory
        x = self.conv2(self.bn(self.act(self.conv1(x))))
        return x.permute(0, 2, 3, 1).reshape(B, N, C)


class Mlp(nn.Module):
    """Linear, GELU, linear (timm's ``Mlp`` parameter names). When no gradient is needed the
    GELU runs in place, which halves the block's peak memory (the hidden layer is 4x wide)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        x = F.gelu(x) if torch.is_grad_enabled() else torch.ops.aten.gelu_(x)
        return self.fc2(x)


class XCABlock(StreamedBlock, nn.Module):
    """XCA, LPI and MLP, each pre-normalised, LayerScaled and residual (in the release's
    order: attention, LPI, MLP; the parameter names keep its gamma1/gamma3/gamma2).

    Each residual is one ``addcmul`` (x + branch * gamma), with stochastic depth folded into
    the LayerScale as a per-sample factor. CPU inference streams large inputs through the
    block in chunks of tokens (:class:`~xcit_dense.models.streaming.StreamedBlock`).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4., qkv_bias: bool = True,
                 drop_path: float = 0., eta: float = 1., norm_cfg: Dict = dict(type='BN')) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = XCA(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.local_mp = LPI(dim, norm_cfg=norm_cfg)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path
        self.gamma1 = nn.Parameter(eta * torch.ones(dim))
        self.gamma3 = nn.Parameter(eta * torch.ones(dim))
        self.gamma2 = nn.Parameter(eta * torch.ones(dim))

    def _residual(self, x: torch.Tensor, branch: torch.Tensor,
                  gamma: torch.Tensor) -> torch.Tensor:
        if self.training and self.drop_path > 0.:
            keep = 1. - self.drop_path  # stochastic depth: drop whole samples' branches
            # out of place: selective recomputation caches it, and a cached tensor stays as made
            gamma = gamma * torch.bernoulli(x.new_full((x.shape[0], 1, 1), keep)).div(keep)
        return torch.addcmul(x, branch, gamma)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        if x.shape[1] > self.STREAM_TOKENS and can_stream(self, x):
            return self.forward_streamed(x, H, W)
        x = self._residual(x, self.attn(self.norm1(x)), self.gamma1)
        x = self._residual(x, self.local_mp(self.norm3(x), H, W), self.gamma3)
        return self._residual(x, self.mlp(self.norm2(x)), self.gamma2)

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        return {'gamma1', 'gamma2', 'gamma3'} | {f'attn.{n}' for n in self.attn.no_weight_decay()}


class XCiT(DenseBackbone):
    """XCiT backbone with a pyramid of up to four levels (strides 4, 8, 16, 32).

    Args:
        arch: A preset name (``'nano_12'``, ``'tiny_12'``, ``'tiny_24'``, ``'small_12'``,
            ``'small_24'``, ``'medium_24'``, ``'large_24'``, or ``'s12'``-style short names)
            or a dict with ``embed_dim``, ``depth``, ``num_heads`` and optionally ``eta`` and
            ``drop_path_rate``.
        patch_size: 8 or 16.
        in_chans: Input image channels.
        out_indices: Blocks whose outputs feed the pyramid, one per level of ``out_strides``
            (ascending). Defaults by depth as in the release: (3, 5, 7, 11) for 12 blocks,
            (7, 11, 15, 23) for 24, taken at the levels ``out_strides`` selects.
        out_strides: The pyramid levels to return, an ascending selection of (4, 8, 16, 32):
            all four for FPN-style necks (default), ``(8, 16, 32)`` for DETR-style or RTMDet
            necks, one (e.g. ``(16,)`` with ``out_indices=(11,)``) for a single-map head.
            Levels not asked for are neither built nor computed, nor are blocks after the
            last one used.
        mlp_ratio: MLP hidden width over embedding width.
        qkv_bias: Bias in the XCA qkv projection.
        drop_path_rate: Stochastic depth rate; by default the preset's (the release's rate for
            its detection and segmentation models, see :data:`ARCH_ZOO`).
        drop_path_schedule: ``'constant'`` (the same rate in every block, as in the release)
            or ``'linear'`` (0 at the first block up to the rate at the last).
        norm_cfg: Norm of the patch embedding, LPI and pyramid (``BN``, ``SyncBN``, ``GN``).
        frozen_stages: -1 trains everything; 0 freezes the patch and position embeddings;
            k > 0 also freezes the first k blocks.
        with_cp: Gradient checkpointing of each block (saves memory, costs time).
        selective_recompute: In training, save only each block's input and the outputs of its
            matrix products, convolutions and batch norm, and recompute the element-wise work
            between them in the backward pass (:mod:`~xcit_dense.models.recompute`): the
            same gradients, 0.62x the peak memory of a training step (S12/8, 512 px) at no
            measurable cost in time. ``with_cp`` takes precedence.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads an ImageNet, DINO
            or dense checkpoint in any format :func:`~xcit_dense.checkpoint.load_xcit_checkpoint`
            reads; ``checkpoint='imagenet'`` is the release's ImageNet checkpoint of this preset
            and patch size (:data:`IMAGENET_URL`).
        pretrained: Deprecated alias of ``init_cfg=dict(type='Pretrained',
            checkpoint=pretrained)`` (mmseg's convention for its backbones).

    Inputs of any size work: they are padded at the bottom and right to H' x W', the next
    multiple of the patch size, and the map at stride ``s`` has ``ceil(H' / s)`` x
    ``ceil(W' / s)`` pixels (``H / s`` x ``W / s`` when 32 divides the input).

    Attributes:
        out_channels: Channels of each output map (the embedding width).
        out_strides: Stride of each output map.
    """

    checkpoints = XCIT_CHECKPOINTS

    def __init__(self,
                 arch: Union[str, Dict] = 'small_12',
                 patch_size: int = 16,
                 in_chans: int = 3,
                 out_indices: Optional[Sequence[int]] = None,
                 out_strides: Sequence[int] = PYRAMID_STRIDES,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_path_rate: Optional[float] = None,
                 drop_path_schedule: str = 'constant',
                 norm_cfg: Dict = dict(type='BN'),
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 selective_recompute: bool = True,
                 init_cfg: Optional[Dict] = None,
                 pretrained: Optional[str] = None) -> None:
        super().__init__(frozen_stages, init_cfg, pretrained)
        arch_cfg = resolve_arch(arch)
        embed_dim, depth = arch_cfg['embed_dim'], arch_cfg['depth']
        out_strides = check_out_strides(out_strides)
        if patch_size not in PATCH_SIZES:
            raise ValueError(f'XCiT patch_size must be one of {PATCH_SIZES}, got {patch_size}')
        if out_indices is None:
            if depth not in DEFAULT_OUT_INDICES:
                raise ValueError(f'No default out_indices for depth {depth}; pass out_indices')
            out_indices = [DEFAULT_OUT_INDICES[depth][PYRAMID_STRIDES.index(s)]
                           for s in out_strides]
        out_indices = tuple(int(i) for i in out_indices)
        n = len(out_strides)
        if (len(out_indices) != n or list(out_indices) != sorted(set(out_indices))
                or out_indices[0] < 0 or out_indices[-1] >= depth):
            raise ValueError(f'out_indices must be {n} ascending block indices in '
                             f'[0, {depth - 1}] for a depth-{depth} XCiT, got {out_indices} '
                             f'(one per level of out_strides={out_strides})')
        if drop_path_schedule not in ('constant', 'linear'):
            raise ValueError("drop_path_schedule must be 'constant' or 'linear', "
                             f'got {drop_path_schedule!r}')
        if not -1 <= frozen_stages <= depth:
            raise ValueError(f'frozen_stages must be in [-1, {depth}], got {frozen_stages}')
        if drop_path_rate is None:
            drop_path_rate = arch_cfg['drop_path_rate']

        self.arch = arch_cfg
        self.arch_name: Optional[str] = (None if isinstance(arch, dict)
                                         else ARCH_ALIASES.get(arch, arch))
        self.patch_size = self.pad_multiple = patch_size
        self.embed_dim = embed_dim
        self.out_indices = out_indices
        self.with_cp = with_cp
        self.selective_recompute = selective_recompute

        self.patch_embed = ConvPatchEmbed(patch_size, in_chans, embed_dim, norm_cfg)
        self.pos_embed = PositionalEncodingFourier(dim=embed_dim)
        if drop_path_schedule == 'constant':
            rates = [drop_path_rate] * depth
        else:
            rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList([
            XCABlock(embed_dim, arch_cfg['num_heads'], mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                     drop_path=rate, eta=arch_cfg['eta'], norm_cfg=norm_cfg)
            for rate in rates[:out_indices[-1] + 1]])  # blocks after the last output are unused
        self.pyramid = SimplePyramid(embed_dim, patch_size, out_strides, norm_cfg)
        self.out_channels: Tuple[int, ...] = (embed_dim,) * n
        self.out_strides: Tuple[int, ...] = self.pyramid.out_strides

        self.apply(self._init_linear)
        self._freeze_stages()

    def imagenet_url(self) -> str:
        """URL of the release's ImageNet checkpoint for this preset and patch size."""
        if self.arch_name is None:
            raise ValueError("checkpoint='imagenet' needs a preset arch, not a custom dict")
        return IMAGENET_URL.format(arch=self.arch_name, patch_size=self.patch_size)

    def frozen_parts(self) -> List[nn.Module]:
        return [self.patch_embed, self.pos_embed, *self.blocks[:self.frozen_stages]]

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        """The positional encoding, the XCA temperatures and the LayerScale gains."""
        return {'pos_embed'} | {f'blocks.{i}.{n}' for i, block in enumerate(self.blocks)
                                for n in block.no_weight_decay()}

    def forward_blocks(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Block outputs at ``out_indices`` as (B, C, H/p, W/p) maps (before the pyramid)."""
        # A channels-last stem writes its output in token layout: no transpose copy.
        x = self.patch_embed(self._padded(x).contiguous(memory_format=torch.channels_last))
        B, C, H, W = x.shape
        # Under autocast the residual stream keeps the weights' precision (timm's does from its
        # first residual on): rounding it to bf16 in every block doubles the error.
        x = (x.permute(0, 2, 3, 1) + self.pos_embed(H, W)).reshape(B, H * W, C)
        x = x.to(self.pos_embed.token_projection.weight.dtype)

        outs = []
        # every trainable block, the first after frozen ones too (its input needs no grad)
        recompute = self.training and torch.is_grad_enabled()
        for i, block in enumerate(self.blocks):
            if recompute and self.with_cp and i >= self.frozen_stages:
                x = cp.checkpoint(block, x, H, W, use_reentrant=False)
            elif recompute and self.selective_recompute and i >= self.frozen_stages:
                x = checkpoint_products(block, x, H, W)
            else:
                x = block(x, H, W)
            if i in self.out_indices:
                outs.append(x.view(B, H, W, C).permute(0, 3, 1, 2))
        return outs

    forward_trunk = forward_blocks
