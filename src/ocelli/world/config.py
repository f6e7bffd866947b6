"""`WorldConfig`: everything that shapes a generated world, and the named presets.

A config is checked when it is built (unknown shapes, colours or question types are
errors) and resolved before use: `resolve()` fills in the per-mode defaults, so the
config saved in meta.json is exactly the one the data was generated with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from ocelli.config import apply_overrides, from_dict, load_yaml, to_dict
from ocelli.errors import ConfigError
from ocelli.world.vocab import COLORS, SHAPES, SIZES

QUESTION_TYPES: tuple[str, ...] = (
    "existence",
    "attribute",
    "count",
    "spatial",
    "comparison",
    "extreme",
    "ocr",
    "reasoning",
)
SORT_OF_CLEVR_TYPES: tuple[str, ...] = ("non-relational", "relational")
LANGS: tuple[str, ...] = ("en", "zh")
DEFAULT_IMAGE_SIZE = 64

# Santoro et al. 2017: 75x75 images, six objects, one per colour, each a square or a
# circle, never overlapping, on a plain background; ten relational and ten
# non-relational questions per image.
SORT_OF_CLEVR_LAYOUT: dict[str, Any] = {
    "image_size": 75,
    "min_objects": 6,
    "max_objects": 6,
    "shapes": ["square", "circle"],
    "colors": ["red", "blue", "green", "orange", "yellow", "gray"],
    "sizes": ["small"],
    "rotation": False,
    "occlusion": False,
    "background": "plain",
    "text_labels": 0.0,
    "cogent": None,
    "question_types": list(SORT_OF_CLEVR_TYPES),
    "questions_per_image": 20,
}


@dataclass
class WorldConfig:
    """What a generated world looks like and which questions are asked about it."""

    image_size: int | None = None  # None: 64, or 75 in sort-of-clevr mode
    min_objects: int = 1
    max_objects: int = 5
    shapes: list[str] = field(default_factory=lambda: list(SHAPES))
    colors: list[str] = field(default_factory=lambda: list(COLORS))
    sizes: list[str] = field(default_factory=lambda: list(SIZES))
    rotation: bool = False
    occlusion: bool = False  # allow partial overlap; otherwise objects never touch
    min_visible: float = 0.5  # fraction of an occluded object that must stay visible
    background: Literal["plain", "noise", "texture"] = "plain"
    text_labels: float = 0.0  # probability that a medium or large object carries a label
    mode: Literal["default", "sort-of-clevr"] = "default"
    cogent: Literal["A", "B"] | None = None
    question_types: list[str] = field(default_factory=lambda: list(QUESTION_TYPES))
    questions_per_image: int = 8
    langs: list[str] = field(default_factory=lambda: ["en"])
    use_heldout_templates: bool | None = None  # None: only outside the train split
    caption_turn: bool = True  # end each conversation with a detailed-caption turn
    supersample: int = 4  # draw at this multiple of image_size, then downsample

    def __post_init__(self) -> None:
        _check_range("image_size", self.image_size, 16, 1024, optional=True)
        _check_range("min_objects", self.min_objects, 1, 16)
        _check_range("max_objects", self.max_objects, 1, 16)
        if self.max_objects < self.min_objects:
            raise ConfigError(
                f"max_objects ({self.max_objects}) is below min_objects ({self.min_objects})"
            )
        _check_names("shapes", self.shapes, SHAPES)
        _check_names("colors", self.colors, tuple(COLORS))
        _check_names("sizes", self.sizes, tuple(SIZES))
        _check_names("question_types", self.question_types, QUESTION_TYPES + SORT_OF_CLEVR_TYPES)
        _check_names("langs", self.langs, LANGS)
        if not 0.0 <= self.text_labels <= 1.0:
            raise ConfigError(
                f"text_labels is a probability, got {self.text_labels}; use 0 to disable labels"
            )
        if not 0.0 < self.min_visible <= 1.0:
            raise ConfigError(f"min_visible must be in (0, 1], got {self.min_visible}")
        _check_range("questions_per_image", self.questions_per_image, 1, 100)
        _check_range("supersample", self.supersample, 1, 8)

    def resolve(self) -> WorldConfig:
        """This config with the mode's fixed settings and defaults filled in."""
        if self.mode == "sort-of-clevr":
            layout = dict(SORT_OF_CLEVR_LAYOUT)
            if self.image_size is not None:
                layout["image_size"] = self.image_size
            return dataclasses.replace(self, **layout)
        types = [t for t in self.question_types if t in QUESTION_TYPES]
        if not types:
            raise ConfigError(
                "question_types has no type of the default mode; "
                f"choose from {', '.join(QUESTION_TYPES)}"
            )
        return dataclasses.replace(
            self, image_size=self.image_size or DEFAULT_IMAGE_SIZE, question_types=types
        )

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str = "world config") -> WorldConfig:
        return from_dict(cls, data, where)


def _check_range(name: str, value: int | None, low: int, high: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")


def _check_names(name: str, values: list[str], known: tuple[str, ...]) -> None:
    if not values:
        raise ConfigError(f"{name} is empty; choose from {', '.join(known)}")
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ConfigError(
            f"{name}: unknown name(s) {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(known)}"
        )
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} lists a name twice: {values}")


# A small, learnable world: a model trained from scratch on two CPU cores learns it in
# minutes.
QUICKSTART_WORLD = WorldConfig(
    image_size=64,
    min_objects=1,
    max_objects=4,
    text_labels=0.0,
    rotation=False,
    occlusion=False,
    background="plain",
)

# A richer world: labels to read, rotated and overlapping objects, noisy backgrounds.
BASE_WORLD = WorldConfig(
    image_size=96,
    min_objects=1,
    max_objects=6,
    text_labels=0.3,
    rotation=True,
    occlusion=True,
    background="noise",
    langs=["en", "zh"],
)

WORLD_PRESETS: dict[str, WorldConfig] = {
    "default": WorldConfig(),
    "quickstart": QUICKSTART_WORLD,
    "base": BASE_WORLD,
}


def world_preset(name: str = "default", **fields: Any) -> WorldConfig:
    """The preset `name` ("default", "quickstart" or "base") with `fields` replaced; the
    fields are checked like a YAML config (unknown keys and values are errors)."""
    if name not in WORLD_PRESETS:
        raise ConfigError(f"unknown world preset {name!r}; choose from {', '.join(WORLD_PRESETS)}")
    data = WORLD_PRESETS[name].to_dict()
    data.update(fields)
    return WorldConfig.from_dict(data, where=f"world preset {name!r}")


def load_world_config(
    path: str | None = None, overrides: list[str] | None = None, preset: str = "default"
) -> WorldConfig:
    """A preset, updated by a YAML file of WorldConfig keys, then by `key=value` overrides."""
    if preset not in WORLD_PRESETS:
        raise ConfigError(
            f"unknown world preset {preset!r}; choose from {', '.join(WORLD_PRESETS)}"
        )
    data = WORLD_PRESETS[preset].to_dict()
    where = "world config"
    if path is not None:
        data.update(load_yaml(path))
        where = str(path)
    data = apply_overrides(data, list(overrides or []))
    return WorldConfig.from_dict(data, where)
