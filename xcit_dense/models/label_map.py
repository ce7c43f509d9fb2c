"""Label maps from a decoder's low-resolution class logits, band by band.

A segmentor's decoder predicts C class logits at a fraction of the image's size (a quarter
for Semantic FPN and UperNet); mmseg resizes them bilinearly to the padded input, crops the
padding, undoes a flip, resizes them to the image's own size and takes the arg-max, holding
the C x H x W map at full resolution twice (5 GB each for 150 classes at 4096 x 2048).
:func:`banded_label_map` computes the same labels a band of output rows at a time, so only a
band's logits exist at full resolution.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


def bilinear_taps(in_size: int, out_size: int,
                  align_corners: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of ``out_size`` output positions of a 1-D bilinear resize from ``in_size``:
    the two input indices it reads and the weight of the second, computed as torch's
    ``upsample_bilinear2d`` computes them (float32 source coordinates)."""
    dst = torch.arange(out_size, dtype=torch.float32)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.
        src = dst * torch.tensor(scale, dtype=torch.float32)
    else:
        scale = torch.tensor(in_size, dtype=torch.float32) / out_size
        src = ((dst + 0.5) * scale - 0.5).clamp(min=0)
    i0 = src.long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    return i0, i1, src - i0


def resize_rows(x: torch.Tensor, taps, rows: slice) -> torch.Tensor:
    """Output rows ``rows`` of ``x`` (..., H, W) resized along H by ``taps``
    (:func:`bilinear_taps`)."""
    i0, i1, w1 = (t[rows].to(x.device) for t in taps)
    first = x.index_select(-2, i0)
    return first.lerp_(x.index_select(-2, i1), w1.to(x.dtype).view(-1, 1))


def resize_columns(x: torch.Tensor, width: int, align_corners: bool) -> torch.Tensor:
    """``x`` (C, h, w) or (B, C, h, w) resized bilinearly along w to ``width`` (torch's kernel,
    its rows left as they are)."""
    y = x if x.dim() == 4 else x.unsqueeze(0)
    y = F.interpolate(y, size=(y.shape[2], width), mode='bilinear',
                      align_corners=align_corners)
    return y if x.dim() == 4 else y.squeeze(0)


def chained_resize_rows(x: torch.Tensor, steps: Sequence[Tuple[Tuple[int, int], bool]],
                        r0: int, r1: int) -> torch.Tensor:
    """Rows [r0, r1) of ``x`` (..., h, w) after bilinear resizes to each ``(size,
    align_corners)`` of ``steps`` in turn (as ``F.interpolate``), reading only the rows each
    step needs."""
    sizes = [tuple(x.shape[-2:])] + [tuple(size) for size, _ in steps]
    taps = [bilinear_taps(a[0], b[0], corners)
            for a, b, (_, corners) in zip(sizes, sizes[1:], steps)]
    ranges = [(r0, r1)]  # the rows read at each step, from the last back to x
    for row_taps in reversed(taps):
        a, b = ranges[0]
        ranges.insert(0, (int(row_taps[0][a:b].min()), int(row_taps[1][a:b].max()) + 1))
    y = x[..., ranges[0][0]:ranges[0][1], :]
    for row_taps, (size, corners), (a, b), (start, _) in zip(taps, steps, ranges[1:], ranges):
        i0, i1, w1 = (t[a:b] for t in row_taps)
        y = resize_columns(resize_rows(y, (i0 - start, i1 - start, w1), slice(None)),
                           size[1], corners)
    return y


def banded_label_map(logits: torch.Tensor, padded_size: Sequence[int],
                     padding: Sequence[int] = (0, 0, 0, 0), flip: Optional[str] = None,
                     out_size: Optional[Sequence[int]] = None, align_corners: bool = False,
                     band_bytes: int = 64 * 2**20) -> torch.Tensor:
    """The (1, H, W) arg-max label map of ``logits`` (C, h, w) resized bilinearly to
    ``padded_size``, cropped by ``padding`` (left, right, top, bottom), flipped back
    (``flip`` 'horizontal' or 'vertical') and resized bilinearly to ``out_size`` (default: the
    cropped size): mmseg's ``predict_by_feat`` and ``postprocess_result``, computed on bands
    of output rows of about ``band_bytes`` of logits each."""
    C = logits.shape[0]
    Hp, Wp = padded_size
    left, right, top, bottom = padding
    Hc, Wc = Hp - top - bottom, Wp - left - right
    Ho, Wo = out_size if out_size is not None else (Hc, Wc)
    first_rows = bilinear_taps(logits.shape[1], Hp, align_corners)
    second_rows = bilinear_taps(Hc, Ho, align_corners)
    resized = (Ho, Wo) != (Hc, Wc)
    labels = torch.empty(1, Ho, Wo, dtype=torch.long, device=logits.device)
    band = max(1, band_bytes // (C * max(Wp, Wo) * logits.element_size()))
    for r0 in range(0, Ho, band):
        r1 = min(r0 + band, Ho)
        # rows of the cropped (and flipped back) map that this band reads
        if resized:
            c0, c1 = int(second_rows[0][r0]), int(second_rows[1][r1 - 1]) + 1
        else:
            c0, c1 = r0, r1
        # the same rows in the padded map; a vertical flip reverses them
        if flip == 'vertical':
            p0, p1 = top + Hc - c1, top + Hc - c0
        else:
            p0, p1 = top + c0, top + c1
        rows = resize_columns(resize_rows(logits, first_rows, slice(p0, p1)), Wp,
                              align_corners)
        rows = rows[:, :, left:left + Wc]
        if flip == 'vertical':
            rows = rows.flip(1)
        elif flip == 'horizontal':
            rows = rows.flip(2)
        if resized:
            i0, i1, w1 = (t[r0:r1] for t in second_rows)
            rows = resize_columns(resize_rows(rows, (i0 - c0, i1 - c0, w1), slice(None)), Wo,
                                  align_corners)
        labels[0, r0:r1] = rows.max(0).indices  # argmax's first maximum; faster for few classes
    return labels
