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
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from timm.layers import trunc_normal_

from ..checkpoint import load_xcit_checkpoint
from .norm import build_norm_layer
from .pyramid import SimplePyramid

# Published variants (XCiT paper, Table 1; timm ``xcit_*``): width, depth, heads, LayerScale eta.
ARCH_ZOO: Dict[str, Dict] = {
    'nano_12': dict(embed_dim=128, depth=12, num_heads=4, eta=1.0),
    'tiny_12': dict(embed_dim=192, depth=12, num_heads=4, eta=1.0),
    'tiny_24': dict(embed_dim=192, depth=24, num_heads=4, eta=1e-5),
    'small_12': dict(embed_dim=384, depth=12, num_heads=8, eta=1.0),
    'small_24': dict(embed_dim=384, depth=24, num_heads=8, eta=1e-5),
    'medium_24': dict(embed_dim=512, depth=24, num_heads=8, eta=1e-5),
    'large_24': dict(embed_dim=768, depth=24, num_heads=16, eta=1e-5),
}
# Short names, as in config file names (``xcit-s12-p8``).
ARCH_ALIASES = {'n12': 'nano_12', 't12': 'tiny_12', 't24': 'tiny_24', 's12': 'small_12',
                's24': 'small_24', 'm24': 'medium_24', 'l24': 'large_24'}
# Blocks whose outputs feed the pyramid, by depth, as in the release's dense configs.
DEFAULT_OUT_INDICES = {12: (3, 5, 7, 11), 24: (7, 11, 15, 23)}
PATCH_SIZES = (8, 16)


def resolve_arch(arch: Union[str, Dict]) -> Dict:
    """Return the architecture dict of a preset name (``'small_12'`` or ``'s12'``) or a dict."""
    if isinstance(arch, dict):
        missing = {'embed_dim', 'depth', 'num_heads'} - set(arch)
        if missing:
            raise KeyError(f'Custom XCiT arch is missing {sorted(missing)}; '
                           'it needs embed_dim, depth, num_heads and optionally eta')
        return dict(eta=1.0, **arch)
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


class ConvPatchEmbed(nn.Module):
    """Patch embedding by a stack of stride-2 3x3 conv-norm layers with GELU in between."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 norm_cfg: Dict = dict(type='BN')) -> None:
        super().__init__()
        if patch_size not in PATCH_SIZES:
            raise ValueError(f'XCiT patch_size must be one of {PATCH_SIZES}, got {patch_size}')
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
            # F.normalize(q, dim=tokens) divides by max(||q||, eps): apply it to the Gram.
            q_norm = torch.linalg.vector_norm(qh, dim=-2).clamp_min(1e-12)  # (B, h, d)
            k_norm = torch.linalg.vector_norm(kh, dim=-2).clamp_min(1e-12)
            attn = gram / (q_norm.unsqueeze(-1) * k_norm.unsqueeze(-2)) * self.temperature
            return attn.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).split(C, dim=-1)
        attn = self.attention(q, k)
        # out[n, o] = sum_{h,i} W[o, (h,i)] sum_j attn[h,i,j] v[n, (h,j)] = v[n] @ M, where
        # M[(h,j), o] = sum_i attn[h,i,j] W[o, (h,i)]: a C x C matrix per image.
        w = self.proj.weight.view(C, h, C // h)
        mix = torch.einsum('bhij,ohi->bhjo', attn, w.to(attn.dtype)).reshape(B, C, C)
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


class XCABlock(nn.Module):
    """XCA, LPI and MLP, each pre-normalised, LayerScaled and residual (in the release's
    order: attention, LPI, MLP; the parameter names keep its gamma1/gamma3/gamma2).

    Each residual is one ``addcmul`` (x + branch * gamma), with stochastic depth folded into
    the LayerScale as a per-sample factor.
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
            gamma = gamma * x.new_empty(x.shape[0], 1, 1).bernoulli_(keep).div_(keep)
        return torch.addcmul(x, branch, gamma.to(branch.dtype))

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = self._residual(x, self.attn(self.norm1(x)), self.gamma1)
        x = self._residual(x, self.local_mp(self.norm3(x), H, W), self.gamma3)
        return self._residual(x, self.mlp(self.norm2(x)), self.gamma2)


class XCiT(nn.Module):
    """XCiT backbone with a 4-level pyramid (strides 4, 8, 16, 32) for FPN-style necks.

    Args:
        arch: A preset name (``'nano_12'``, ``'tiny_12'``, ``'tiny_24'``, ``'small_12'``,
            ``'small_24'``, ``'medium_24'``, ``'large_24'``, or ``'s12'``-style short names)
            or a dict with ``embed_dim``, ``depth``, ``num_heads`` and ``eta``.
        patch_size: 8 or 16.
        in_chans: Input image channels.
        out_indices: Blocks whose outputs feed the pyramid (4 ascending indices). Defaults by
            depth as in the release: (3, 5, 7, 11) for 12 blocks, (7, 11, 15, 23) for 24.
        mlp_ratio: MLP hidden width over embedding width.
        qkv_bias: Bias in the XCA qkv projection.
        drop_path_rate: Stochastic depth rate.
        drop_path_schedule: ``'constant'`` (the same rate in every block, as in the release)
            or ``'linear'`` (0 at the first block up to the rate at the last).
        norm_cfg: Norm of the patch embedding, LPI and pyramid (``BN``, ``SyncBN``, ``GN``).
        frozen_stages: -1 trains everything; 0 freezes the patch and position embeddings;
            k > 0 also freezes the first k blocks.
        with_cp: Gradient checkpointing of each block (saves memory, costs time).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads an ImageNet or dense
            checkpoint in any format :func:`~xcit_dense.checkpoint.load_xcit_checkpoint` reads.

    Inputs of any size work: they are padded at the bottom and right to H' x W', the next
    multiple of the patch size, and the map at stride ``s`` has ``ceil(H' / s)`` x
    ``ceil(W' / s)`` pixels (``H / s`` x ``W / s`` when 32 divides the input).

    Attributes:
        out_channels: Channels of each output map (the embedding width, four times).
        out_strides: Stride of each output map, ``(4, 8, 16, 32)``.
    """

    def __init__(self,
                 arch: Union[str, Dict] = 'small_12',
                 patch_size: int = 16,
                 in_chans: int = 3,
                 out_indices: Optional[Sequence[int]] = None,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_path_rate: float = 0.,
                 drop_path_schedule: str = 'constant',
                 norm_cfg: Dict = dict(type='BN'),
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 init_cfg: Optional[Dict] = None) -> None:
        super().__init__()
        arch_cfg = resolve_arch(arch)
        embed_dim, depth = arch_cfg['embed_dim'], arch_cfg['depth']
        if patch_size not in PATCH_SIZES:
            raise ValueError(f'XCiT patch_size must be one of {PATCH_SIZES}, got {patch_size}')
        if out_indices is None:
            if depth not in DEFAULT_OUT_INDICES:
                raise ValueError(f'No default out_indices for depth {depth}; pass out_indices')
            out_indices = DEFAULT_OUT_INDICES[depth]
        out_indices = tuple(int(i) for i in out_indices)
        if (len(out_indices) != 4 or list(out_indices) != sorted(set(out_indices))
                or out_indices[0] < 0 or out_indices[-1] >= depth):
            raise ValueError(f'out_indices must be 4 ascending block indices in [0, {depth - 1}] '
                             f'for a depth-{depth} XCiT, got {out_indices}')
        if drop_path_schedule not in ('constant', 'linear'):
            raise ValueError("drop_path_schedule must be 'constant' or 'linear', "
                             f'got {drop_path_schedule!r}')
        if not -1 <= frozen_stages <= depth:
            raise ValueError(f'frozen_stages must be in [-1, {depth}], got {frozen_stages}')

        self.arch = arch_cfg
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.init_cfg = init_cfg

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
        self.pyramid = SimplePyramid(embed_dim, patch_size, (4, 8, 16, 32), norm_cfg)
        self.out_channels: Tuple[int, ...] = (embed_dim,) * 4
        self.out_strides: Tuple[int, ...] = self.pyramid.out_strides

        self.apply(self._init_module)
        self._freeze_stages()

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        """Load ``init_cfg``'s pretrained checkpoint, if any (called by mmengine's runner)."""
        if self.init_cfg is None:
            return
        cfg = dict(self.init_cfg)
        if cfg.pop('type', None) != 'Pretrained' or 'checkpoint' not in cfg:
            raise ValueError("XCiT init_cfg must be dict(type='Pretrained', checkpoint=PATH), "
                             f'got {self.init_cfg}')
        load_xcit_checkpoint(self, cfg['checkpoint'])

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed, self.pos_embed, *self.blocks[:self.frozen_stages]]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'XCiT':
        super().train(mode)
        self._freeze_stages()  # keep frozen BatchNorms in eval mode
        return self

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {'pos_embed'}

    def forward_blocks(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Block outputs at ``out_indices`` as (B, C, H/p, W/p) maps (before the pyramid)."""
        if x.dim() != 4:
            raise ValueError(f'XCiT expects a (B, C, H, W) image batch, got shape {tuple(x.shape)}')
        p = self.patch_size
        pad_h, pad_w = -x.shape[2] % p, -x.shape[3] % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        # A channels-last stem writes its output in token layout: no transpose copy.
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        B, C, H, W = x.shape
        x = (x.permute(0, 2, 3, 1) + self.pos_embed(H, W)).reshape(B, H * W, C)

        outs = []
        for i, block in enumerate(self.blocks):
            if self.with_cp and self.training and x.requires_grad:
                x = cp.checkpoint(block, x, H, W, use_reentrant=False)
            else:
                x = block(x, H, W)
            if i in self.out_indices:
                outs.append(x.view(B, H, W, C).permute(0, 3, 1, 2))
        return outs

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Return four NCHW maps with strides ``out_strides`` and ``out_channels`` channels."""
        return tuple(y.contiguous() for y in self.pyramid(self.forward_blocks(x)))
