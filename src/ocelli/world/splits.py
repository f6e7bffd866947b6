"""Seeds for splits and images, and the CLEVR-CoGenT style colour-shape conditions.

Every split draws from its own sub-seed, a hash of (seed, split), and every image from
its own stream under that sub-seed: the same seed and split always give the same images
whatever `num_images` is, and train, val and test never share a random stream.

CoGenT conditions (Johnson et al. 2017, adapted): the colours are cut into two halves,
COGENT_COLORS_1 and COGENT_COLORS_2, and two groups of shapes are tied to them.
Condition A: shapes in COGENT_SHAPES_1 (square, pentagon, star) take colours from half 1
only, shapes in COGENT_SHAPES_2 (triangle, hexagon, diamond) from half 2 only.
Condition B: the halves are swapped. Circles take any colour in both. A model trained on
A and tested on B meets colour-shape pairs it has never seen.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from ocelli.errors import ConfigError
from ocelli.world.config import WorldConfig

SPLITS: tuple[str, ...] = ("train", "val", "test")

# Independent random streams per image: a change in how questions are drawn does not
# move the scenes, and adding a language does not change the English questions.
STREAMS: dict[str, int] = {"scene": 0, "render": 1, "questions": 2, "en": 3, "zh": 4}

COGENT_COLORS_1: tuple[str, ...] = ("red", "blue", "yellow", "purple", "gray")
COGENT_COLORS_2: tuple[str, ...] = ("green", "orange", "cyan", "brown", "pink")
COGENT_SHAPES_1: tuple[str, ...] = ("square", "pentagon", "star")
COGENT_SHAPES_2: tuple[str, ...] = ("triangle", "hexagon", "diamond")

_SPLIT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def check_split(split: str) -> str:
    if not isinstance(split, str) or not _SPLIT_NAME.match(split):
        raise ConfigError(
            f"split {split!r} is not a valid name; use train, val, test or another "
            "lower-case name of letters, digits, '-' and '_'"
        )
    return split


def split_seed(seed: int, split: str) -> int:
    """A 63-bit sub-seed for `split`, stable across Python versions and machines."""
    digest = hashlib.sha256(f"ocelli.world:{int(seed)}:{check_split(split)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def image_rng(sub_seed: int, index: int, stream: str) -> np.random.Generator:
    """The random stream `stream` of image `index` in the split with `sub_seed`."""
    sequence = np.random.SeedSequence([sub_seed, index, STREAMS[stream]])
    return np.random.Generator(np.random.PCG64(sequence))


def colors_for_shape(config: WorldConfig, shape: str) -> list[str]:
    """Colours `shape` may take under the config's CoGenT condition (in config order)."""
    if config.cogent is None or shape not in COGENT_SHAPES_1 + COGENT_SHAPES_2:
        return list(config.colors)
    first_half = (shape in COGENT_SHAPES_1) == (config.cogent == "A")
    half = COGENT_COLORS_1 if first_half else COGENT_COLORS_2
    return [c for c in config.colors if c in half]


def allowed_combos(config: WorldConfig) -> list[tuple[str, str]]:
    """Every (colour, shape) pair the config can generate, in config order."""
    combos = []
    for shape in config.shapes:
        colors = colors_for_shape(config, shape)
        if not colors:
            raise ConfigError(
                f"CoGenT condition {config.cogent} leaves no colour for {shape!r} among "
                f"colors {config.colors}; add colours from both halves or drop the shape"
            )
        combos.extend((color, shape) for color in colors)
    return combos
