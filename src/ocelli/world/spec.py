"""The meaning of a question, before it is put into words.

Questions are drawn once per image as `QuestionSpec`s (a type, a template family, slot
values and an `Answer`, all language-independent) and then phrased in each language by
ocelli.world.text. English and Chinese therefore ask the same things about an image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ocelli.world.scenes import Scene, SceneObject


@dataclass(frozen=True)
class Ref:
    """A way to point at objects: by colour, by shape, by both, or neither (all objects)."""

    color: str | None = None
    shape: str | None = None


@dataclass(frozen=True)
class Answer:
    """A language-independent answer.

    kind is one of: yes_no (value: bool), color, shape, size, side (value: the English
    name), count (value: int), word (value: the label text), reasoning (value: bool;
    detail: ((Ref, count), (Ref, count)), the two counts that justify it).
    """

    kind: str
    value: Any
    detail: tuple = ()


@dataclass
class QuestionSpec:
    """One question about one image: its type, subtype, template family and slots."""

    type: str
    subtype: str
    family: str
    slots: dict[str, Any]
    answer: Answer
    extra: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple:
        """Identity used to avoid asking the same question twice about an image."""
        return (self.family, self.subtype, tuple(sorted(self.slots.items(), key=str)))


POSITION_KEYS: tuple[tuple[str, ...], ...] = (
    ("top_left", "top", "top_right"),
    ("left", "center", "right"),
    ("bottom_left", "bottom", "bottom_right"),
)


def position_key(obj: SceneObject, scene: Scene) -> str:
    """Rough position of an object on a 3x3 grid, e.g. "top_left" or "center"."""
    column = min(2, obj.center[0] * 3 // scene.width)
    row = min(2, obj.center[1] * 3 // scene.height)
    return POSITION_KEYS[row][column]


def reading_order(scene: Scene) -> list[SceneObject]:
    """Objects top to bottom by grid row, then left to right: how captions list them."""
    return sorted(
        scene.objects,
        key=lambda o: (min(2, o.center[1] * 3 // scene.height), o.center[0], o.id),
    )
