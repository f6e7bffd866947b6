"""Shape outlines: vertices, bounding boxes and pixel masks.

Coordinates are continuous image coordinates with y pointing down; pixel (x, y) covers
[x, x+1) x [y, y+1). An object's `center` names its centre pixel, so its outline is
centred on the continuous point (cx + 0.5, cy + 0.5). Scene generation (placement,
occlusion) and the renderer both draw outlines from here, so the ground truth and the
pixels agree.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from ocelli.world.vocab import SHAPES

STAR_INNER_RATIO = 0.45  # fatter than a pentagram so small stars stay star-like
DIAMOND_WIDTH_RATIO = 0.65  # a rhombus taller than wide, unlike a rotated square


def unit_outline(shape: str) -> list[tuple[float, float]]:
    """Vertices of `shape` with circumradius 1 around the origin, pointing up."""
    if shape == "square":
        return _regular(4, start_deg=-135.0)
    if shape == "triangle":
        return _regular(3)
    if shape == "pentagon":
        return _regular(5)
    if shape == "hexagon":
        return _regular(6)
    if shape == "star":
        outer, inner = _regular(5), _regular(5, start_deg=-90.0 + 36.0, radius=STAR_INNER_RATIO)
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    if shape == "diamond":
        w = DIAMOND_WIDTH_RATIO
        return [(0.0, -1.0), (w, 0.0), (0.0, 1.0), (-w, 0.0)]
    if shape == "circle":
        return _regular(64)
    raise ValueError(f"unknown shape {shape!r}")


def _regular(
    sides: int, start_deg: float = -90.0, radius: float = 1.0
) -> list[tuple[float, float]]:
    step = 360.0 / sides
    return [
        (
            radius * math.cos(math.radians(start_deg + i * step)),
            radius * math.sin(math.radians(start_deg + i * step)),
        )
        for i in range(sides)
    ]


def _area(points: list[tuple[float, float]]) -> float:
    twice = sum(
        x0 * y1 - x1 * y0
        for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True)
    )
    return abs(twice) / 2.0


# Circumradius per unit of nominal radius, chosen so every shape of a size class covers
# the area of a square with that circumradius: a "large" triangle is as big as a
# "large" circle, and size questions mean the same for every shape.
SHAPE_SCALE: dict[str, float] = {
    shape: math.sqrt(2.0 / (math.pi if shape == "circle" else _area(unit_outline(shape))))
    for shape in SHAPES
}


def circumradius(shape: str, radius: float) -> float:
    """Radius of the circle around `shape` drawn at nominal `radius`."""
    return SHAPE_SCALE[shape] * radius


def outline(
    shape: str, center: tuple[float, float], radius: float, rotation: float = 0.0
) -> list[tuple[float, float]]:
    """Polygon vertices of an object, rotated clockwise by `rotation` degrees."""
    cx, cy = center[0] + 0.5, center[1] + 0.5
    scale = circumradius(shape, radius)
    cos_r, sin_r = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    return [
        (cx + scale * (x * cos_r - y * sin_r), cy + scale * (x * sin_r + y * cos_r))
        for x, y in unit_outline(shape)
    ]


def bounding_box(
    shape: str, center: tuple[float, float], radius: float, rotation: float, image_size: int
) -> list[int]:
    """Integer [x0, y0, x1, y1] (x1, y1 exclusive) around the object, clipped to the image."""
    if shape == "circle":
        r = circumradius(shape, radius)
        cx, cy = center[0] + 0.5, center[1] + 0.5
        xs, ys = [cx - r, cx + r], [cy - r, cy + r]
    else:
        points = outline(shape, center, radius, rotation)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [
        max(0, math.floor(min(xs))),
        max(0, math.floor(min(ys))),
        min(image_size, math.ceil(max(xs))),
        min(image_size, math.ceil(max(ys))),
    ]


def draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    center: tuple[float, float],
    radius: float,
    rotation: float,
    fill,
    scale: float = 1.0,
) -> None:
    """Draw one object onto `draw`, all coordinates multiplied by `scale`."""
    cx, cy = (center[0] + 0.5) * scale, (center[1] + 0.5) * scale
    if shape == "circle":
        r = circumradius(shape, radius) * scale
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        return
    points = outline(shape, center, radius, rotation)
    draw.polygon([(x * scale, y * scale) for x, y in points], fill=fill)


def object_mask(
    shape: str, center: tuple[float, float], radius: float, rotation: float, image_size: int
) -> np.ndarray:
    """Boolean mask (image_size x image_size) of the pixels the object covers."""
    canvas = Image.new("L", (image_size, image_size), 0)
    draw_shape(ImageDraw.Draw(canvas), shape, center, radius, rotation, fill=1)
    return np.asarray(canvas, dtype=bool)
