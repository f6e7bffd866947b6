"""A classical object detector for the world's images: the corrector's expert model.

Analysis by synthesis, with the world's own geometry:
1. every pixel is explained as the background (light grey) blended with one world
   colour: its coverage `alpha` of that colour is the projection of the pixel onto the
   background-to-colour line (the renderer box-averages, so alpha is the exact share);
2. the pixels mostly covered by one colour form connected components;
3. each component is fitted by rendering every shape and size class of the world at
   its centroid (and the pixel around it) and keeping the outline whose coverage map
   is closest to the observed one; what the fit leaves unexplained is fitted again, so
   two touching objects of one colour are both found.

The result is a `Scene` (shape, colour, size, centre, box of each object, and the
background), so a claim is checked against it with the same exact checker evaluation
uses against the ground truth (ocelli.eval.metrics.claims.is_faithful). An image the
world could not have drawn (too many pixels that are neither background nor a world
colour, or not square) raises `UnverifiableImage` instead of guessing.

    scene = ShapeDetector().detect("world/test/images/test_000000.png")
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ocelli.data.images import ImageInput, load_image
from ocelli.errors import OcelliError
from ocelli.world.geometry import bounding_box, draw_shape
from ocelli.world.render import BACKGROUND_RGB
from ocelli.world.scenes import Scene, SceneObject
from ocelli.world.vocab import COLORS, SHAPES, SIZES

SUPERSAMPLE = 4  # the renderer's default: fitted outlines are drawn the way images are


class UnverifiableImage(OcelliError):
    """The image is not one the world could have drawn: the detector cannot verify it."""


@dataclass
class DetectorConfig:
    """min_alpha: coverage above which a pixel belongs to a colour's component;
    max_residual: RGB distance from the background-colour line a pixel may have;
    min_explained: share of pixels that must be background or a world colour for the
    image to count as a world image; min_area: smallest component kept, as a share of
    a small object's area."""

    min_alpha: float = 0.5
    max_residual: float = 30.0
    min_explained: float = 0.9
    min_area: float = 0.3
    max_objects_per_component: int = 3
    shapes: tuple[str, ...] = SHAPES
    colors: tuple[str, ...] = tuple(COLORS)
    sizes: tuple[str, ...] = tuple(SIZES)


class ShapeDetector:
    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self._palette = np.array([COLORS[c] for c in self.config.colors], dtype=np.float32)

    def detect(self, image: ImageInput, image_id: str = "detected") -> Scene:
        """The scene the image shows; `UnverifiableImage` if it is not a world image."""
        pixels = np.asarray(load_image(image).convert("RGB"), dtype=np.float32)
        height, width = pixels.shape[:2]
        if height != width:
            raise UnverifiableImage(
                f"the image is {width}x{height}; the world's images are square, so the "
                "detector cannot verify it"
            )
        labels, alpha, explained = self._explain(pixels)
        if explained < self.config.min_explained:
            raise UnverifiableImage(
                f"only {explained:.0%} of the image's pixels are the world's background or "
                f"colours (at least {self.config.min_explained:.0%} needed): it does not look "
                "like a world image, so the detector cannot verify it"
            )
        objects: list[SceneObject] = []
        for color_index, color in enumerate(self.config.colors):
            coverage = np.where(labels == color_index, alpha, 0.0)
            for component in _components(coverage >= self.config.min_alpha):
                objects += self._fit_component(coverage, component, color, width, len(objects))
        return Scene(
            id=image_id,
            width=width,
            height=height,
            background=_background_kind(pixels, labels),
            background_seed=0,
            objects=objects,
        )

    def _explain(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Per pixel: the index of its colour (-1: background), its coverage, and the
        share of pixels explained by background or a colour."""
        background = np.asarray(BACKGROUND_RGB, dtype=np.float32)
        offsets = self._palette - background  # (C, 3)
        delta = pixels[:, :, None, :] - background  # (H, W, 1, 3)
        alpha = np.clip((delta * offsets).sum(-1) / (offsets**2).sum(-1), 0.0, 1.0)  # (H, W, C)
        residual = np.linalg.norm(delta - alpha[..., None] * offsets, axis=-1)
        best = residual.argmin(-1)
        best_alpha = np.take_along_axis(alpha, best[..., None], -1)[..., 0]
        best_residual = np.take_along_axis(residual, best[..., None], -1)[..., 0]
        # Background: light and nearly grey (noise and texture backgrounds stay grey).
        light_grey = (pixels.min(-1) > 180) & (np.ptp(pixels, axis=-1) < 12)
        coloured = (best_residual <= self.config.max_residual) & (best_alpha > 0.15)
        labels = np.where(coloured & ~(light_grey & (best_alpha < 0.3)), best, -1)
        explained = float((light_grey | coloured).mean())
        return labels, np.where(labels >= 0, best_alpha, 0.0), explained

    def _fit_component(
        self, coverage: np.ndarray, component: np.ndarray, color: str, size: int, first_id: int
    ) -> list[SceneObject]:
        """One object per pass over what the previous fits left unexplained."""
        smallest = min(SIZES[s] for s in self.config.sizes) * size
        min_area = self.config.min_area * 2 * smallest**2
        window = _dilate(component, 2)
        observed = np.where(window, coverage, 0.0)
        found: list[SceneObject] = []
        for _ in range(self.config.max_objects_per_component):
            core = observed >= self.config.min_alpha
            if observed.sum() < min_area or not core.any():
                break
            ys, xs = np.nonzero(observed)
            weights = observed[ys, xs]
            center = (float((xs * weights).sum() / weights.sum()) - 0.5,
                      float((ys * weights).sum() / weights.sum()) - 0.5)  # fmt: skip
            obj, model = self._best_outline(observed, center, color, size, first_id + len(found))
            found.append(obj)
            observed = np.clip(observed - model, 0.0, 1.0)
            observed[observed < 0.25] = 0.0  # antialiasing left-overs are not objects
        return found

    def _best_outline(
        self,
        observed: np.ndarray,
        center: tuple[float, float],
        color: str,
        size: int,
        object_id: int,
    ) -> tuple[SceneObject, np.ndarray]:
        base = (round(center[0]), round(center[1]))
        # The centroid of a star's or triangle's visible pixels can sit two pixels from
        # the centre the outline is drawn around: search a 5x5 neighbourhood.
        spots = [(base[0] + dx, base[1] + dy) for dy in range(-2, 3) for dx in range(-2, 3)]
        best: tuple[float, str, str, tuple[int, int], np.ndarray] | None = None
        for shape in self.config.shapes:
            for size_name in self.config.sizes:
                template = _template(shape, SIZES[size_name], size)
                for spot in spots:
                    model = _shifted(template, spot, size)
                    error = float(np.abs(observed - model).sum())
                    if best is None or error < best[0]:
                        best = (error, shape, size_name, spot, model)
        assert best is not None
        _, shape, size_name, spot, model = best
        radius = round(SIZES[size_name] * size, 2)
        obj = SceneObject(
            id=object_id,
            shape=shape,
            color=color,
            size=size_name,
            radius=radius,
            center=list(spot),
            bbox=bounding_box(shape, spot, radius, 0, size),
        )
        return obj, model


@functools.lru_cache(maxsize=256)
def _template(shape: str, size_fraction: float, size: int) -> np.ndarray:
    """Coverage of the outline drawn at the centre of a canvas twice the image's side,
    so every placement in the image is a crop of it."""
    radius = round(size_fraction * size, 2)
    canvas = Image.new("L", (2 * size * SUPERSAMPLE, 2 * size * SUPERSAMPLE), 0)
    draw_shape(ImageDraw.Draw(canvas), shape, (size, size), radius, 0, fill=255, scale=SUPERSAMPLE)
    return np.asarray(canvas.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0


def _shifted(template: np.ndarray, center: tuple[int, int], size: int) -> np.ndarray:
    """The template's outline moved to `center` (pixels outside the image cut off)."""
    x0, y0 = size - center[0], size - center[1]
    if not (0 <= x0 <= size and 0 <= y0 <= size):
        return np.zeros((size, size), dtype=np.float32)
    return template[y0 : y0 + size, x0 : x0 + size]


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a boolean mask, each as a boolean mask."""
    seen = np.zeros_like(mask)
    height, width = mask.shape
    found = []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        component = np.zeros_like(mask)
        queue = deque([(y0, x0)])
        seen[y0, x0] = True
        while queue:
            y, x = queue.popleft()
            component[y, x] = True
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        found.append(component)
    return found


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    grown = mask.copy()
    for _ in range(steps):
        padded = np.pad(grown, 1)
        grown = (
            padded[1:-1, 1:-1] | padded[:-2, 1:-1] | padded[2:, 1:-1]
            | padded[1:-1, :-2] | padded[1:-1, 2:]
        )  # fmt: skip
    return grown


def _background_kind(pixels: np.ndarray, labels: np.ndarray) -> str:
    """plain (one grey), noise (independent pixels) or texture (smooth stripes/checks)."""
    grey = pixels.mean(-1)
    free = labels < 0
    if grey[free].std() < 1.0:
        return "plain"
    # Neighbouring pixels of independent noise differ by about sqrt(2) std; a smooth
    # texture's much less.
    both = free[:, 1:] & free[:, :-1]
    step = np.abs(grey[:, 1:] - grey[:, :-1])[both]
    return "noise" if step.mean() > 0.8 * grey[free].std() else "texture"


def match_detections(truth: Scene, detected: Scene, min_iou: float = 0.5) -> dict[str, Any]:
    """Detections matched one-to-one to true objects of the same colour and shape whose
    boxes overlap by `min_iou`; counts of matches, detections and true objects."""
    unmatched = list(truth.objects)
    matched = sized = 0
    ious = []
    for obj in detected.objects:
        candidates = [
            (box_iou(obj.bbox, t.bbox), t)
            for t in unmatched
            if (t.color, t.shape) == (obj.color, obj.shape)
        ]
        candidates = [c for c in candidates if c[0] >= min_iou]
        if candidates:
            iou, hit = max(candidates, key=lambda c: c[0])
            unmatched.remove(hit)
            matched += 1
            sized += hit.size == obj.size
            ious.append(iou)
    return {
        "matched": matched,
        "size_correct": sized,
        "detections": len(detected.objects),
        "objects": len(truth.objects),
        "iou_sum": sum(ious),
    }


def box_iou(first: list[int], second: list[int]) -> float:
    x0, y0 = max(first[0], second[0]), max(first[1], second[1])
    x1, y1 = min(first[2], second[2]), min(first[3], second[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    area = (first[2] - first[0]) * (first[3] - first[1]) + (second[2] - second[0]) * (
        second[3] - second[1]
    )
    return inter / (area - inter) if area - inter > 0 else 0.0


def evaluate_detector(
    world_dir: str | Path, limit: int | None = None, detector: ShapeDetector | None = None
) -> dict[str, float]:
    """Precision and recall of the detector on a world split against scenes.jsonl: a
    detection is right when its colour and shape are a true object's and their boxes
    overlap by IoU >= 0.5; also the size accuracy and mean IoU of the matches, and how
    often the object count is exact."""
    from ocelli.world.loading import load_scenes

    root = Path(world_dir)
    detector = detector or ShapeDetector()
    totals = {"matched": 0, "size_correct": 0, "detections": 0, "objects": 0, "iou_sum": 0.0}
    exact_counts = images = 0
    for scene in load_scenes(root)[:limit]:
        detected = detector.detect(root / str(scene.image), scene.id)
        for key, value in match_detections(scene, detected).items():
            totals[key] += value
        exact_counts += len(detected.objects) == len(scene.objects)
        images += 1
    matched = totals["matched"]
    return {
        "precision": matched / totals["detections"] if totals["detections"] else 0.0,
        "recall": matched / totals["objects"] if totals["objects"] else 0.0,
        "size_accuracy": totals["size_correct"] / matched if matched else 0.0,
        "mean_iou": totals["iou_sum"] / matched if matched else 0.0,
        "count_accuracy": exact_counts / images if images else 0.0,
        "num_images": images,
        "num_objects": totals["objects"],
        "num_detections": totals["detections"],
    }
