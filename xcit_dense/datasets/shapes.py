"""Random scenes of coloured, non-overlapping shapes: the drawing behind the toy datasets."""
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ('circle', 'square', 'triangle')
Polygon = List[Tuple[float, float]]


def shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> Polygon:
    """Vertices of a shape centred at (cx, cy) with circumradius r, rotated by angle."""
    n = {'circle': 32, 'square': 4, 'triangle': 3}[shape]
    start = angle + (math.pi / 4 if shape == 'square' else 0.)
    return [(cx + r * math.cos(start + 2 * math.pi * i / n),
             cy + r * math.sin(start + 2 * math.pi * i / n)) for i in range(n)]


def polygon_area(points: Polygon) -> float:
    xs, ys = np.array(points).T
    return float(0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def background(rng: np.random.Generator, size: int, textured: bool = False) -> Image.Image:
    """A colour gradient with mild noise; ``textured`` adds random stripes, so a model must
    find the shapes' outlines rather than a flat colour change."""
    c0, c1 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    t = np.linspace(0, 1, size)[None, :, None]
    img = np.broadcast_to(c0 * (1 - t) + c1 * t, (size, size, 3)).copy()
    if textured:
        yy, xx = np.mgrid[:size, :size]
        theta, period = rng.uniform(0, math.pi), rng.uniform(6, 16)
        stripes = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
        img += 25 * stripes[..., None]
    img += rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def draw_scene(rng: np.random.Generator, size: int, max_objects: int,
               textured: bool = False) -> Tuple[Image.Image, List[Tuple[int, Polygon]]]:
    """An image with 1..max_objects shapes that never overlap, and each shape's
    (class index into SHAPES, polygon)."""
    img = background(rng, size, textured)
    draw = ImageDraw.Draw(img)
    placed: List[Tuple[float, float, float]] = []
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(50):  # rejection sampling
            r = float(rng.uniform(0.09, 0.2) * size)
            cx, cy = rng.uniform(r + 2, size - r - 2, 2)
            if all(math.hypot(cx - x, cy - y) > r + pr + 3 for x, y, pr in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        label = int(rng.integers(len(SHAPES)))
        points = shape_polygon(SHAPES[label], cx, cy, r, float(rng.uniform(0, 2 * math.pi)))
        draw.polygon(points, fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        objects.append((label, points))
    return img, objects


# The demo models' object scale: circumradius 0.09-0.2 of their 160-pixel training images.
SMALL_RADII = (14.0, 32.0)
LARGE_RADII = (270.0, 330.0)  # wider than a 512-pixel slice
PIXELS_PER_OBJECT = 24000  # default density: about 390 shapes in 3072 x 3072


def large_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A ``height`` x ``width`` float32 RGB canvas: a diagonal colour gradient with mild noise."""
    c0, c1 = rng.uniform(40, 215, 3).astype(np.float32), rng.uniform(40, 215, 3).astype(
        np.float32)
    t = (np.arange(height, dtype=np.float32)[:, None] / max(height, 1)
         + np.arange(width, dtype=np.float32)[None, :] / max(width, 1)) / 2
    image = c0 + (c1 - c0) * t[..., None]
    image += rng.normal(0, 6, (height, width, 3)).astype(np.float32)
    return image


class _Placer:
    """Circles (centre, circumradius) inside a canvas that never overlap: a shape drawn in
    each touches another only where their circles touch."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.circles = np.zeros((0, 3))

    def fits(self, cx: float, cy: float, r: float, gap: float) -> bool:
        if not (r + 1 <= cx <= self.width - r - 1 and r + 1 <= cy <= self.height - r - 1):
            return False
        c = self.circles
        return bool(np.all(np.hypot(c[:, 0] - cx, c[:, 1] - cy) >= c[:, 2] + r + gap))

    def add(self, cx: float, cy: float, r: float) -> None:
        self.circles = np.vstack([self.circles, [cx, cy, r]])


def draw_large_scene(rng: np.random.Generator, height: int, width: int,
                     num_objects: Optional[int] = None, num_large: Optional[int] = None,
                     slice_sizes: Sequence[int] = (512, 1024), overlap: float = 0.2
                     ) -> Tuple[np.ndarray, List[Tuple[int, Polygon]]]:
    """A ``height`` x ``width`` RGB array of shapes at the demo models' scale (circumradius 14
    to 32 pixels; by default one per 24000 pixels) and each shape's (class index into SHAPES,
    polygon). A quarter of them sit on the borders of the ``slice_sizes`` slice grids (with
    ``overlap``, :func:`~xcit_dense.slice_grid.slice_windows`), a fifth come in clusters of 3 to
    6 touching shapes, the rest anywhere; ``num_large`` shapes (by default one per 2.4 MP) are
    wider than a 512-pixel slice. No two shapes overlap."""
    from ..slice_grid import slice_windows
    area = height * width
    num_objects = round(area / PIXELS_PER_OBJECT) if num_objects is None else num_objects
    num_large = max(1, round(area / 2.4e6)) if num_large is None else num_large
    placer, placed = _Placer(height, width), []

    def place(cx, cy, r, gap=3.0):
        if placer.fits(cx, cy, r, gap):
            placer.add(cx, cy, r)
            placed.append((cx, cy, r))
            return True
        return False

    def small_radius():
        return float(rng.uniform(*SMALL_RADII))

    for _ in range(num_large):
        for _attempt in range(50):
            r = float(rng.uniform(*LARGE_RADII))
            if place(*rng.uniform(r + 1, [width - r - 1, height - r - 1]), r, gap=8.0):
                break
    borders = []  # (axis, coordinate) of every slice border inside the image
    for size in slice_sizes:
        for x1, y1, x2, y2 in slice_windows(height, width, size, overlap):
            borders += [(0, x) for x in (x1, x2) if 0 < x < width]
            borders += [(1, y) for y in (y1, y2) if 0 < y < height]
    borders = sorted(set(borders))
    on_borders = num_objects // 4 if borders else 0
    for _ in range(on_borders):
        for _attempt in range(50):
            axis, line = borders[int(rng.integers(len(borders)))]
            r = small_radius()
            along = float(rng.uniform(r + 1, (height if axis == 0 else width) - r - 1))
            across = line + float(rng.uniform(-0.6, 0.6)) * r
            if place(*((across, along) if axis == 0 else (along, across)), r):
                break
    clustered = 0
    while clustered < num_objects // 5:
        r = small_radius()
        first = rng.uniform(r + 1, [width - r - 1, height - r - 1])
        if not place(*first, r):
            continue
        members = [(float(first[0]), float(first[1]), r)]
        for _ in range(int(rng.integers(2, 6))):
            for _attempt in range(30):
                ax, ay, ar = members[int(rng.integers(len(members)))]
                r = small_radius()
                theta = float(rng.uniform(0, 2 * math.pi))
                cx, cy = ax + (ar + r) * math.cos(theta), ay + (ar + r) * math.sin(theta)
                if place(cx, cy, r, gap=0.0):
                    members.append((cx, cy, r))
                    break
        clustered += len(members)
    attempts = 0
    while len(placed) < num_objects + num_large and attempts < 50 * num_objects:
        attempts += 1
        r = small_radius()
        place(*rng.uniform(r + 1, [width - r - 1, height - r - 1]), r)

    canvas = Image.fromarray(np.clip(large_background(rng, height, width), 0, 255).astype(
        np.uint8))
    draw = ImageDraw.Draw(canvas)
    objects = []
    for cx, cy, r in placed:
        label = int(rng.integers(len(SHAPES)))
        points = shape_polygon(SHAPES[label], cx, cy, r, float(rng.uniform(0, 2 * math.pi)))
        draw.polygon(points, fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        objects.append((label, points))
    return np.asarray(canvas), objects
