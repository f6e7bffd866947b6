"""Object statistics of a world split and the per-image choices the built-in tasks make
from them: which objects are present, which absent ones to ask about (POPE's random,
popular and adversarial negatives), how to name an object unambiguously.

An "object" here is a colour-shape pair ("red circle"), the world's equivalent of a COCO
category: 70 of them in the default world, so three absent ones can always be drawn.
Every choice is seeded per image; random choices do not depend on which other images are
in the split, popular and adversarial negatives do (by definition: split statistics).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ocelli.world.scenes import Scene, SceneObject
from ocelli.world.spec import Ref
from ocelli.world.text_en import indefinite, referent
from ocelli.world.vocab import COLORS, SHAPES

Combo = tuple[str, str]  # (color, shape)
NEGATIVE_SAMPLING = ("random", "popular", "adversarial")


def combos(scene: Scene) -> list[Combo]:
    """The distinct colour-shape pairs of a scene, in object order."""
    return list(dict.fromkeys((obj.color, obj.shape) for obj in scene.objects))


@dataclass
class ObjectStats:
    """How often each colour-shape pair appears in (and with which others) over a split."""

    frequency: Counter
    cooccurrence: Counter

    @classmethod
    def from_scenes(cls, scenes: list[Scene]) -> ObjectStats:
        frequency: Counter = Counter()
        cooccurrence: Counter = Counter()
        for scene in scenes:
            present = sorted(combos(scene))
            frequency.update(present)
            cooccurrence.update(combinations(present, 2))
        return cls(frequency, cooccurrence)

    @property
    def universe(self) -> list[Combo]:
        return sorted(self.frequency)

    def together(self, a: Combo, b: Combo) -> int:
        return self.cooccurrence[tuple(sorted((a, b)))]


def image_rng(seed: int, image_id: str, purpose: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{image_id}:{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def absent_objects(
    present: list[Combo], stats: ObjectStats, how: str, count: int, rng: np.random.Generator
) -> list[Combo]:
    """`count` pairs not in the image. random: uniform over every colour-shape pair of the
    vocabulary (as POPE draws from all COCO categories), so it does not depend on the
    other images; popular: the most frequent in the split; adversarial: those that
    co-occur most often with the image's objects."""
    if how == "random":
        everything = [(color, shape) for color in COLORS for shape in SHAPES]
        candidates = [c for c in everything if c not in set(present)]
        picked = rng.choice(len(candidates), size=min(count, len(candidates)), replace=False)
        return [candidates[i] for i in sorted(picked)]
    candidates = [c for c in stats.universe if c not in set(present)]
    if how == "popular":
        key = lambda c: (-stats.frequency[c], c)  # noqa: E731
    elif how == "adversarial":
        key = lambda c: (-sum(stats.together(c, p) for p in present), -stats.frequency[c], c)  # noqa: E731
    else:
        raise ValueError(f"negative sampling must be one of {NEGATIVE_SAMPLING}, got {how!r}")
    return sorted(candidates, key=key)[:count]


def a_phrase(combo: Combo) -> str:
    """ "a red circle", "an orange star"."""
    return indefinite(Ref(*combo))


def the_phrase(obj: SceneObject) -> str:
    return referent(Ref(obj.color, obj.shape))


def uniquely_named(scene: Scene) -> list[SceneObject]:
    """Objects no other object shares colour and shape with: "the red circle" is one."""
    counts = Counter((obj.color, obj.shape) for obj in scene.objects)
    return [obj for obj in scene.objects if counts[(obj.color, obj.shape)] == 1]
