"""Random scenes of coloured, non-overlapping shapes: the drawing behind the toy datasets."""
import math
from typing import List, Tuple

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


def draw_large_scene(rng: np.random.Generator, height: int, width: int, tile: int = 160,
                     max_objects: int = 4) -> Tuple[np.ndarray, List[Tuple[int, Polygon]]]:
    """A ``height`` x ``width`` RGB array tiled with toy scenes of ``tile`` pixels (the demo
    models' training images, so objects keep the scale they learned; edge tiles are cut),
    and each shape's (class index, polygon in the large image's coordinates)."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    objects = []
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            scene, shapes = draw_scene(rng, tile, max_objects)
            h, w = min(tile, height - y), min(tile, width - x)
            image[y:y + h, x:x + w] = np.asarray(scene)[:h, :w]
            objects += [(label, [(px + x, py + y) for px, py in points])
                        for label, points in shapes
                        if max(px for px, _ in points) < w and max(py for _, py in points) < h]
    return image, objects
