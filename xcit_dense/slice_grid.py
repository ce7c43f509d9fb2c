"""Where slices of a large image lie, and which objects their borders cut (numpy only).

The layout is SAHI's (``sahi.slicing.get_slice_bboxes``, which mmdet's
``demo/large_image_demo.py`` uses): square windows of ``size`` pixels stepping by ``size -
int(overlap * size)``, the last window of a row or column moved back to end at the image's
edge. mmseg's ``slide`` inference with ``crop_size = size`` and ``stride = size - int(overlap *
size)`` lays its crops out the same way, so detection and segmentation see the same slices.
"""
from typing import List, Tuple

import numpy as np

Window = Tuple[int, int, int, int]  # x1, y1, x2, y2 (x2, y2 exclusive)


def slice_stride(size: int, overlap: float) -> int:
    """The step between neighbouring slices of ``size`` pixels overlapping by ``overlap``."""
    return size - int(overlap * size)


def slice_windows(height: int, width: int, size: int, overlap: float) -> List[Window]:
    """The slices of a ``height`` x ``width`` image, row by row, as SAHI lays them out (an
    image smaller than a slice is one window of its own size)."""
    from sahi.slicing import get_slice_bboxes
    return [tuple(int(v) for v in box) for box in get_slice_bboxes(
        height, width, size, size, auto_slice_resolution=False,
        overlap_height_ratio=overlap, overlap_width_ratio=overlap)]


def cut_by_windows(boxes: np.ndarray, windows: List[Window]) -> np.ndarray:
    """For boxes ``[x1, y1, x2, y2]`` (N x 4, pixels), whether some window cuts the object:
    overlaps it without holding all of it, so that the slice sees a piece of it."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    grid = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = (boxes[:, None, k] for k in range(4))
    wx1, wy1, wx2, wy2 = (grid[None, :, k] for k in range(4))
    overlaps = (x1 < wx2) & (wx1 < x2) & (y1 < wy2) & (wy1 < y2)
    holds = (wx1 <= x1) & (x2 <= wx2) & (wy1 <= y1) & (y2 <= wy2)
    return (overlaps & ~holds).any(axis=1)


def held_by_no_window(boxes: np.ndarray, windows: List[Window]) -> np.ndarray:
    """For boxes ``[x1, y1, x2, y2]``, whether no single window holds the whole object (the
    objects a sliced prediction can only assemble from pieces)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    grid = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    holds = ((grid[None, :, 0] <= boxes[:, None, 0]) & (boxes[:, None, 2] <= grid[None, :, 2])
             & (grid[None, :, 1] <= boxes[:, None, 1]) & (boxes[:, None, 3] <= grid[None, :, 3]))
    return ~holds.any(axis=1)
