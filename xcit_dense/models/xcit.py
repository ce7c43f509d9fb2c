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

from ..checkpoint import (XCIT_CHECKPOINTS, adapt_loaded_state, load_init_cfg,
                          load_xcit_checkpoint, pretrained_to_init_cfg)
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
# The release's ImageNet-1k checkpoint of each preset and patch size that its dense models are
# trained from; ``init_cfg=dict(type='Pretrained', checkpoint='imagenet')`` loads it.
IMAGENET_URL = 'https://dl.fbaipublicfiles.com/xcit/xcit_{arch}_p{patch_size}_384_dist.pth'


def resolve_arch(arch: Union[str, Dict]) -> Dict:
    """Return the architecture dict of a preset name (``'small_12'`` or ``'s12'``) or a dict."""
    if isinstance(arch, dict):
        missing = {'embed_dim', 'depth', 'num_heads'} - set(arch)
        if missing:
            raise KeyError(f'Custom XCiT arch is missing {sorted(missing)}; '
                           'it needs embed_dim, depth, num_heads and optionally eta')
        return {'eta': 1.0, **arch}
    name = ARCH_ALIASES.get(arch, arch)
    if name not in ARCH_ZOO:
        raise KeyError(f'Unknown XCiT arch {arch!r}; valid names are {sorted(ARCH_ZOO)} '
                       f'(or {sorted(ARCH_ALIASES)}), or a dict with embed_dim, depth, '
                       'num_heads and eta')
    return dict(ARCH_ZOO[name])


def _is_graph_capture() -> bool:
    """Whether the forward is being traced, scripted, exported to ONNX or compiled: the
    streamed loops would be unrolled there (a graph per chunk), so the plain forward is used."""
    compiling = getattr(getattr(torch, 'compiler', None), 'is_compiling', lambda: False)
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or compiling()
            or torch.onnx.is_in_onnx_export())


def _acts_per_pixel(m: nn.Module) -> bool:
    """Whether a module treats every pixel (token) on its own at inference: normalisation
    layers must not use statistics of the whole map or batch."""
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return not m.training and m.track_running_stats and m.running_mean is not None
    return not isinstance(m, (nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
                              nn.LocalResponseNorm))


def can_stream(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module`` may run its streamed (chunked) inference forward on ``x``.

    Streaming keeps each chunk's intermediates in the CPU cache and gives the same outputs as
    the plain forward only where every layer acts per pixel: CPU inference (no autograd),
    nothing in training mode, BatchNorms in eval mode with running statistics, no GroupNorm or
    InstanceNorm; and not while the forward is traced, exported or compiled. On GPUs the
    unchunked path is faster (kernel launches, not the cache, bound it there).
    """
    return (x.device.type == 'cpu' and not torch.is_grad_enabled() and not _is_graph_capture()
            and all(not m.training and _acts_per_pixel(m) for m in module.modules()))


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
    """Patch embedding by a stack of stride-2 3x3 conv-norm layers with GELU in between.

    CPU inference streams large images through the stem in bands of output rows (see
    :meth:`forward_streamed`): its first layers' maps are the largest tensors of the network
    (at patch size 8, 24x the pixels of the input image in floats) and would leave the cache.
    """

    # Output tokens per band when streaming: the band's first-layer map then stays in cache.
    BAND_TOKENS = 2048

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

    def forward_streamed(self, x: torch.Tensor) -> torch.Tensor:
        """The stem's inference forward, in bands of output rows.

        Output row r of the stack depends on input rows p * r - (p - 1) ... p * r + p - 1, and
        with stride-2 convolutions on even heights the bottom zero-padding is never read. So
        a band of output rows [r0, r1) is exact when computed from input rows
        [p * (r0 - 1), p * r1) and its first output row (which saw a false top padding) is
        dropped; the band at r0 = 0 reads the true top padding.
        """
        p = self.patch_size
        B, _, H, W = x.shape
        out_h, out_w = H // p, W // p
        band_rows = max(4, -(-self.BAND_TOKENS // out_w))  # the halo row costs 1/band_rows
        out = None
        for r0 in range(0, out_h, band_rows):
            r1 = min(r0 + band_rows, out_h)
            halo = 1 if r0 else 0
            band = self.proj(x[:, :, p * (r0 - halo):p * r1])[:, :, halo:]
            if out is None:
                out = band.new_empty(B, band.shape[1], out_h, out_w).contiguous(
                    memory_format=torch.channels_last)
            out[:, :, r0:r1] = band
        return out


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


class XCABlock(nn.Module):
    """XCA, LPI and MLP, each pre-normalised, LayerScaled and residual (in the release's
    order: attention, LPI, MLP; the parameter names keep its gamma1/gamma3/gamma2).

    Each residual is one ``addcmul`` (x + branch * gamma), with stochastic depth folded into
    the LayerScale as a per-sample factor.

    Inference on CPU streams large inputs through the block in chunks of about
    ``STREAM_TOKENS`` tokens (see :meth:`forward_streamed`): the same arithmetic, but each
    chunk's intermediates (qkv, the 4x-wide MLP layer) stay in the CPU cache, so the time per
    pixel no longer grows once the image outgrows the cache, and peak memory is a few token maps.
    """

    # Tokens per chunk when streaming: the chunk's MLP hidden layer (1024 x 4C floats, 6 MB
    # at width 384) fits in the last-level cache, and 1024-row matrix products stay efficient.
    STREAM_TOKENS = 1024
    BAND_TOKENS = 2048

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
        if x.shape[1] > self.STREAM_TOKENS and can_stream(self, x):
            return self.forward_streamed(x, H, W)
        x = self._residual(x, self.attn(self.norm1(x)), self.gamma1)
        x = self._residual(x, self.local_mp(self.norm3(x), H, W), self.gamma3)
        return self._residual(x, self.mlp(self.norm2(x)), self.gamma2)

    def forward_streamed(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """The block's inference forward, computed in chunks of tokens, one image at a time.

        Three passes over each image's (N, C) tokens ``src``, written to ``dst``:

        1. per chunk: norm1 and qkv, accumulating the per-head Gram q^T k and the squared
           token-norms of q and k; v is parked in ``dst``;
        2. per chunk: ``dst = src + gamma1 * (v @ M + bias)``, M the attention folded into the
           projection (XCA needs the Gram of all tokens before any output, hence two passes);
        3. per band of rows (with a 2-row halo for the two 3x3 depthwise convolutions): the LPI
           residual, then the MLP residual. A band is written back only after the next band
           has been computed, since that band's halo reads the previous band's input rows.
        """
        attn = self.attn
        B, N, C = x.shape
        h = attn.num_heads
        d = C // h
        chunk = self.STREAM_TOKENS
        # Bands of about BAND_TOKENS tokens (>= 2 rows: a halo must not reach a band that was
        # written back); the 4-row halo makes thin bands costly.
        band_rows = max(2, -(-self.BAND_TOKENS // W))
        out = torch.empty_like(x)
        for src, dst in zip(x, out):
            # 1. cross-covariance statistics (fp32, like XCA.attention)
            gram = src.new_zeros(h, d, d, dtype=torch.float32)
            q_sq = src.new_zeros(C, dtype=torch.float32)
            k_sq = src.new_zeros(C, dtype=torch.float32)
            for s in range(0, N, chunk):
                q, k, v = attn.qkv(self.norm1(src[s:s + chunk])).split(C, dim=-1)
                q, k = q.float(), k.float()
                gram.baddbmm_(q.unflatten(-1, (h, d)).permute(1, 2, 0),
                              k.unflatten(-1, (h, d)).transpose(0, 1))
                q_sq.add_(q.square().sum(0))
                k_sq.add_(k.square().sum(0))
                dst[s:s + chunk] = v
            mix = attn.mix(attn.normalized_softmax(
                gram, q_sq.sqrt().view(h, d), k_sq.sqrt().view(h, d))).to(dst.dtype)
            # 2. attention residual, in place of v
            bias = attn.proj.bias.to(dst.dtype)
            for s in range(0, N, chunk):
                branch = torch.addmm(bias, dst[s:s + chunk], mix)
                torch.addcmul(src[s:s + chunk], branch, self.gamma1, out=dst[s:s + chunk])
            # 3. LPI and MLP residuals, band by band, each written back one band late
            pending = None
            for r0 in range(0, H, band_rows):
                r1 = min(r0 + band_rows, H)
                a0, a1 = max(r0 - 2, 0), min(r1 + 2, H)
                lpi = self.local_mp(self.norm3(dst[a0 * W:a1 * W]).unsqueeze(0), a1 - a0, W)
                if pending is not None:
                    self._finish_band(dst, *pending)
                pending = (r0 * W, r1 * W, lpi[0, (r0 - a0) * W:(r1 - a0) * W])
            self._finish_band(dst, *pending)
        return out

    def _finish_band(self, tokens: torch.Tensor, start: int, end: int,
                     lpi: torch.Tensor) -> None:
        """Add the LPI residual, then the MLP residual, to ``tokens[start:end]`` in place."""
        band = tokens[start:end]
        band.addcmul_(lpi, self.gamma3)
        for s in range(0, end - start, self.STREAM_TOKENS):
            chunk = band[s:s + self.STREAM_TOKENS]
            chunk.addcmul_(self.mlp(self.norm2(chunk)), self.gamma2)


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
                 init_cfg: Optional[Dict] = None,
                 pretrained: Optional[str] = None) -> None:
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
        self.arch_name: Optional[str] = (None if isinstance(arch, dict)
                                         else ARCH_ALIASES.get(arch, arch))
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.init_cfg = pretrained_to_init_cfg(pretrained, init_cfg, 'XCiT')

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

    def imagenet_url(self) -> str:
        """URL of the release's ImageNet checkpoint for this preset and patch size."""
        if self.arch_name is None:
            raise ValueError("checkpoint='imagenet' needs a preset arch, not a custom dict")
        return IMAGENET_URL.format(arch=self.arch_name, patch_size=self.patch_size)

    def init_weights(self) -> None:
        """Load ``init_cfg``'s pretrained checkpoint, if any (called by mmengine's runner)."""
        init_cfg = self.init_cfg
        if init_cfg is not None and init_cfg.get('checkpoint') == 'imagenet':
            init_cfg = dict(init_cfg, checkpoint=self.imagenet_url())
        load_init_cfg(self, init_cfg, load_xcit_checkpoint, 'XCiT')

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Every load path (torch's and mmengine's load_state_dict, so load_from, tools/test.py
        # and the inferencers) passes here: convert any checkpoint format's keys, and refuse to
        # leave part of the backbone at its initialisation when a whole model is loaded.
        adapt_loaded_state(self, state_dict, prefix, XCIT_CHECKPOINTS)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
            # every trainable block, the first after frozen ones too (its input needs no grad)
            if (self.with_cp and self.training and torch.is_grad_enabled()
                    and i >= self.frozen_stages):
                x = cp.checkpoint(block, x, H, W, use_reentrant=False)
            else:
                x = block(x, H, W)
            if i in self.out_indices:
                outs.append(x.view(B, H, W, C).permute(0, 3, 1, 2))
        return outs

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Return four NCHW maps with strides ``out_strides`` and ``out_channels`` channels."""
        return tuple(y.contiguous() for y in self.pyramid(self.forward_blocks(x)))
