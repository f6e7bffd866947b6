"""Scene graphs: what is in an image, where, and what hides what.

A scene is drawn by rejection sampling: each object gets a shape, colour, size,
rotation and maybe a label, then positions are drawn until the object lies inside the
canvas and either touches nothing (occlusion off) or leaves every object below it at
least `min_visible` visible with its centre uncovered (occlusion on). Object ids are
the draw order: a higher id is drawn later, on top.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ocelli.errors import ConfigError, DataError
from ocelli.world.config import WorldConfig
from ocelli.world.geometry import bounding_box, circumradius, object_mask
from ocelli.world.splits import colors_for_shape, image_rng, split_seed
from ocelli.world.vocab import LABEL_WORDS, SIZES

MAX_TRIES_PER_OBJECT = 100
MAX_SCENE_ATTEMPTS = 50
GAP_PIXELS = 1.0  # free space between non-overlapping objects, so their edges never blend
MIN_CENTER_DISTANCE = 0.5  # overlapping objects: centres at least this many radii apart


@dataclass
class SceneObject:
    """One object of a scene. `center` and `bbox` are in pixels; bbox is [x0, y0, x1, y1]
    with x1, y1 exclusive; `radius` is the nominal radius of its size class."""

    id: int
    shape: str
    color: str
    size: str
    radius: float
    center: list[int]
    bbox: list[int]
    rotation: int = 0
    label: str | None = None
    visible_fraction: float = 1.0
    occluded_by: list[int] = field(default_factory=list)


@dataclass
class Scene:
    """An image's ground truth. `background_seed` fixes noise and texture, so the scene
    alone is enough to re-render the image."""

    id: str
    width: int
    height: int
    background: str
    background_seed: int
    objects: list[SceneObject]
    image: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["image"] is None:
            del data["image"]
        # Key order of the scenes.jsonl line: identity first, objects last.
        order = ["id", "image", "width", "height", "background", "background_seed", "objects"]
        return {key: data[key] for key in order if key in data}

    @classmethod
    def from_dict(cls, data: Any, where: str = "scene") -> Scene:
        if not isinstance(data, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(data).__name__}")
        try:
            objects = [SceneObject(**obj) for obj in data["objects"]]
            fields = {k: data[k] for k in ("id", "width", "height", "background")}
            return cls(
                **fields,
                background_seed=int(data.get("background_seed", 0)),
                objects=objects,
                image=data.get("image"),
            )
        except KeyError as exc:
            raise DataError(f"{where}: missing key {exc}") from None
        except TypeError as exc:
            raise DataError(f"{where}: malformed scene or object ({exc})") from None


def generate_scene(
    rng: np.random.Generator, config: WorldConfig | None = None, scene_id: str = "scene"
) -> Scene:
    """Draw one scene from `rng` (a numpy Generator) under `config`."""
    config = (config or WorldConfig()).resolve()
    size = config.image_size
    for _ in range(MAX_SCENE_ATTEMPTS):
        num_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
        objects = [_draw_attributes(rng, config, i, size) for i in range(num_objects)]
        if config.mode == "sort-of-clevr":
            # One object per colour, as in Sort-of-CLEVR.
            for obj, index in zip(objects, rng.permutation(len(config.colors)), strict=False):
                obj.color = config.colors[int(index)]
        if _place_all(rng, config, objects):
            return Scene(
                id=scene_id,
                width=size,
                height=size,
                background=config.background,
                background_seed=int(rng.integers(0, 2**31 - 1)),
                objects=objects,
            )
    raise ConfigError(
        f"could not fit {config.min_objects}-{config.max_objects} objects of sizes "
        f"{config.sizes} into a {size}x{size} image; lower max_objects, drop the large "
        "size or raise image_size"
    )


def generate_scenes(
    num_images: int, seed: int, split: str = "train", config: WorldConfig | None = None
) -> list[Scene]:
    """The first `num_images` scenes of `split` for `seed` (image i never depends on n)."""
    if num_images <= 0:
        raise ConfigError(f"num_images must be positive, got {num_images}")
    sub_seed = split_seed(seed, split)
    return [
        generate_scene(image_rng(sub_seed, index, "scene"), config, scene_id(split, index))
        for index in range(num_images)
    ]


def scene_id(split: str, index: int) -> str:
    return f"{split}_{index:06d}"


def _draw_attributes(
    rng: np.random.Generator, config: WorldConfig, object_id: int, image_size: int
) -> SceneObject:
    shape = config.shapes[int(rng.integers(len(config.shapes)))]
    colors = colors_for_shape(config, shape)
    color = colors[int(rng.integers(len(colors)))]
    size = config.sizes[int(rng.integers(len(config.sizes)))]
    rotation = int(rng.integers(0, 360)) if config.rotation and shape != "circle" else 0
    label = None
    # Small objects are too small to hold legible text.
    if config.text_labels > 0 and size != "small" and rng.random() < config.text_labels:
        label = LABEL_WORDS[int(rng.integers(len(LABEL_WORDS)))]
    radius = round(SIZES[size] * image_size, 2)
    return SceneObject(
        id=object_id,
        shape=shape,
        color=color,
        size=size,
        radius=radius,
        center=[0, 0],
        bbox=[0, 0, 0, 0],
        rotation=rotation,
        label=label,
    )


def _place_all(rng: np.random.Generator, config: WorldConfig, objects: list[SceneObject]) -> bool:
    """Give every object a position; False when one of them does not fit."""
    size = config.image_size
    masks: list[np.ndarray] = []
    covers: list[np.ndarray] = []  # per placed object: pixels covered by later objects
    for index, obj in enumerate(objects):
        reach = circumradius(obj.shape, obj.radius)
        low, high = math.ceil(reach - 0.5), math.floor(size - reach - 0.5)
        if low > high:
            return False
        for _ in range(MAX_TRIES_PER_OBJECT):
            center = [int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))]
            if not _far_enough(obj, center, objects[:index], config.occlusion):
                continue
            if not config.occlusion:
                break
            mask = object_mask(obj.shape, center, obj.radius, obj.rotation, size)
            if _keeps_visible(mask, objects[:index], masks, covers, config.min_visible):
                for cover in covers:
                    cover |= mask
                masks.append(mask)
                covers.append(np.zeros_like(mask))
                break
        else:
            return False
        obj.center = center
        obj.bbox = bounding_box(obj.shape, center, obj.radius, obj.rotation, size)
    if config.occlusion:
        _record_occlusion(objects, masks, covers)
    return True


def _far_enough(
    obj: SceneObject, center: list[int], placed: list[SceneObject], occlusion: bool
) -> bool:
    reach = circumradius(obj.shape, obj.radius)
    for other in placed:
        other_reach = circumradius(other.shape, other.radius)
        distance = math.dist(center, other.center)
        needed = (
            MIN_CENTER_DISTANCE * (reach + other_reach)
            if occlusion
            else reach + other_reach + GAP_PIXELS
        )
        if distance < needed:
            return False
    return True


def _keeps_visible(
    mask: np.ndarray,
    placed: list[SceneObject],
    masks: list[np.ndarray],
    covers: list[np.ndarray],
    min_visible: float,
) -> bool:
    """Would every placed object stay identifiable with `mask` drawn on top of it?"""
    for obj, below, cover in zip(placed, masks, covers, strict=True):
        cx, cy = obj.center
        if mask[cy, cx]:
            return False
        area = below.sum()
        if area and (below & ~(cover | mask)).sum() / area < min_visible:
            return False
    return True


def _record_occlusion(
    objects: list[SceneObject], masks: list[np.ndarray], covers: list[np.ndarray]
) -> None:
    for obj, mask, cover in zip(objects, masks, covers, strict=True):
        area = mask.sum()
        obj.visible_fraction = round(float((mask & ~cover).sum() / area), 3) if area else 1.0
        obj.occluded_by = [
            later.id
            for later, later_mask in zip(objects, masks, strict=True)
            if later.id > obj.id and (mask & later_mask).any()
        ]
