"""Streamed CPU inference of XCiT's stem and blocks and of the pyramid adapters: the same
arithmetic as their plain forwards, computed in chunks of tokens and bands of rows.

On CPU the time per pixel of a plain forward grows once an image's intermediates (the stem's
first maps, a block's qkv and 4x-wide MLP layer) outgrow the last-level cache. Streaming keeps
each chunk's intermediates in the cache, and peak memory at a few token maps. It gives the
plain forward's outputs only where every layer acts per pixel (:func:`can_stream`). On GPUs
the unchunked path is faster: kernel launches, not the cache, bound it there.

The mixins here are inherited by :class:`~xcit_dense.models.xcit.ConvPatchEmbed`,
:class:`~xcit_dense.models.xcit.XCABlock` and the pyramids
(:class:`~xcit_dense.models.pyramid.PyramidLevels`); the module's ``forward`` chooses the path.
"""
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn as nn


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
    """Whether ``module`` may run its streamed (chunked) inference forward on ``x``: CPU
    inference (no autograd), nothing in training mode, BatchNorms in eval mode with running
    statistics, no GroupNorm or InstanceNorm; and not while the forward is traced, exported or
    compiled."""
    return (x.device.type == 'cpu' and not torch.is_grad_enabled() and not _is_graph_capture()
            and all(not m.training and _acts_per_pixel(m) for m in module.modules()))


class StreamedStem:
    """The patch embedding's inference forward in bands of output rows: its first layers'
    maps are the largest tensors of the network (at patch size 8, 24x the pixels of the input
    image in floats). Needs ``self.proj`` (the conv stack) and ``self.patch_size``."""

    # Output tokens per band: the band's first-layer map then stays in cache.
    BAND_TOKENS = 2048

    def forward_streamed(self, x: torch.Tensor) -> torch.Tensor:
        """Output row r of the stack depends on input rows p * r - (p - 1) ... p * r + p - 1,
        and with stride-2 convolutions on even heights the bottom zero-padding is never read.
        So a band of output rows [r0, r1) is exact when computed from input rows
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


class StreamedBlock:
    """The XCA block's inference forward in chunks of about ``STREAM_TOKENS`` tokens, one image
    at a time. Needs the block's ``attn`` (:class:`~xcit_dense.models.xcit.XCA`), ``local_mp``,
    ``mlp``, ``norm1``/``norm2``/``norm3`` and ``gamma1``/``gamma2``/``gamma3``."""

    # Tokens per chunk: the chunk's MLP hidden layer (1024 x 4C floats, 6 MB at width 384)
    # fits in the last-level cache, and 1024-row matrix products stay efficient.
    STREAM_TOKENS = 1024
    # Tokens per band of rows for LPI and the MLP (>= 2 rows, see forward_streamed).
    BAND_TOKENS = 2048

    def forward_streamed(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """Three passes over each image's (N, C) tokens ``src``, written to ``dst``:

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
        # Bands of >= 2 rows (a halo must not reach a band that was written back); the 4-row
        # halo makes thin bands costly.
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


def _pair(v) -> Tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def row_factors(level: nn.Module) -> Optional[Tuple[int, int]]:
    """``(up, down)`` for a pyramid level whose output rows depend only on the input rows they
    come from (transposed convolutions with kernel = stride, max-pooling with kernel = stride,
    per-pixel norms and activations): output rows = ceil(up * input rows / down). None for
    any other level (it runs whole)."""
    up = down = 1
    for m in level.modules():
        if isinstance(m, (nn.Sequential, nn.Identity, nn.GELU, nn.ReLU,
                          nn.modules.batchnorm._BatchNorm)):
            continue
        if (isinstance(m, nn.ConvTranspose2d) and m.kernel_size == m.stride
                and m.padding == (0, 0) and m.output_padding == (0, 0) and m.groups == 1
                and m.stride[0] == m.stride[1]):
            up *= m.stride[0]
        elif (isinstance(m, nn.MaxPool2d) and _pair(m.kernel_size) == _pair(m.stride)
                and _pair(m.padding) == (0, 0) and _pair(m.dilation) == (1, 1)
                and _pair(m.stride)[0] == _pair(m.stride)[1]):
            down *= _pair(m.stride)[0]
        else:
            return None
    return up, down


class StreamedPyramid:
    """The pyramid's inference forward level by level, each level in bands of input rows,
    written straight into its NCHW output: no second full-size copy of a level (the plain
    path makes the block outputs' channels-last layout contiguous afterwards), and each input
    map is released once the last level reading it is done. The levels run smallest output
    first, so the largest (stride 4, four times the tokens) is computed when the other inputs
    are already released. Needs the levels to iterate and :meth:`level_sources`."""

    # Input tokens per band: a band's output stays in the last-level cache.
    BAND_TOKENS = 4096

    def level_sources(self) -> Tuple[int, ...]:
        """For each level, the index of the input map it reads."""
        raise NotImplementedError

    def forward_streamed(self, features: List[torch.Tensor],
                         defer_finest: bool = False) -> Tuple:
        """The levels' outputs; ``features`` (a list) is emptied as its maps are used up.
        With ``defer_finest``, the first level, when it only upsamples, is returned as a
        :class:`RowSource` computing its rows on demand (a streamed neck reads it band by band,
        so the largest map of the pyramid never exists in full)."""
        levels = list(self)
        sources = self.level_sources()
        outputs: List = [None] * len(levels)
        deferred = row_factors(levels[0]) if defer_finest else None
        if deferred is not None and deferred[1] == 1:
            outputs[0] = self._deferred_level(levels[0], features[sources[0]], deferred[0])

        def out_size(i: int) -> int:
            x, factors = features[sources[i]], row_factors(levels[i]) or (1, 1)
            return x.shape[2] * x.shape[3] * factors[0] ** 2 // factors[1] ** 2

        for i in sorted(range(len(levels)), key=out_size):
            if outputs[i] is not None:
                continue
            x = features[sources[i]]
            factors = row_factors(levels[i])
            if factors is None:
                outputs[i] = levels[i](x).contiguous()
            else:
                outputs[i] = self._level_in_bands(levels[i], x, *factors)
            if all(outputs[j] is not None and not isinstance(outputs[j], RowSource)
                   for j, s in enumerate(sources) if s == sources[i]):
                features[sources[i]] = None
        return tuple(outputs)

    def out_channels_of(self, level: int, x: torch.Tensor) -> int:
        """Channels of a level's output for an input map ``x``."""
        convs = [m for m in list(self)[level].modules() if isinstance(m, nn.ConvTranspose2d)]
        return convs[-1].out_channels if convs else x.shape[1]

    def _deferred_level(self, level: nn.Module, x: torch.Tensor, up: int) -> 'RowSource':
        """An upsampling level on ``x`` as a :class:`RowSource`."""
        return RowSource(lambda a, b: self._upsampled_rows(level, x, up, a, b),
                         (x.shape[0], self.out_channels_of(0, x), x.shape[2] * up,
                          x.shape[3] * up), x.device, x.dtype)

    @staticmethod
    def _upsampled_rows(level: nn.Module, x: torch.Tensor, up: int, a: int,
                        b: int) -> torch.Tensor:
        """Rows [a, b) of an upsampling level's output on ``x``: output row r comes from
        input row r // up alone."""
        r0, r1 = a // up, -(-b // up)
        return level(x[:, :, r0:r1])[:, :, a - r0 * up:b - r0 * up]

    def _level_in_bands(self, level: nn.Module, x: torch.Tensor, up: int,
                        down: int) -> torch.Tensor:
        H, W = x.shape[2:]
        band = max(down, -(-self.BAND_TOKENS // W) // down * down)
        out = None
        for r0 in range(0, H, band):
            y = level(x[:, :, r0:r0 + band])
            if out is None:
                out = y.new_empty(y.shape[0], y.shape[1], -(-H * up // down), y.shape[3])
            o0 = r0 * up // down
            out[:, :, o0:o0 + y.shape[2]] = y
        return out


class RowSource:
    """A map computed on demand: ``rows(a, b)`` returns its rows [a, b) (dim 2); ``shape``,
    ``device`` and ``dtype`` describe the whole map, which need never exist."""

    def __init__(self, rows: Callable[[int, int], torch.Tensor], shape: Tuple[int, ...],
                 device: torch.device, dtype: torch.dtype) -> None:
        self.rows, self.shape, self.device, self.dtype = rows, torch.Size(shape), device, dtype

    def full(self) -> torch.Tensor:
        """The whole map."""
        return self.rows(0, self.shape[2]).contiguous()
