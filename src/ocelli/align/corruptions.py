"""Controlled corruptions of the world's faithful English descriptions and answers.

Each corruption changes one thing (adds an absent object, changes a colour, size or
shape, changes the object count, mirrors a position) and records the changed
character spans in both texts. A corruption is only returned when it makes the text
false about the scene, checked with the exact claim scorer of ocelli.eval (a colour
changed to one another object of that shape already has would still be true).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ocelli.align.pairs import Span
from ocelli.eval.metrics.claims import score_description
from ocelli.world.scenes import Scene, SceneObject
from ocelli.world.spec import position_key, reading_order
from ocelli.world.text_en import _POSITIONS
from ocelli.world.vocab import NO, YES

DESCRIPTION_KINDS = ("object", "attribute", "count", "relation")
# A mirrored cell of the 3x3 grid: the relation to the image (and to every object on
# the other side) flips. The centre has no mirror.
_MIRROR = {
    "top_left": "bottom_right",
    "top": "bottom",
    "top_right": "bottom_left",
    "left": "right",
    "right": "left",
    "bottom_left": "top_right",
    "bottom": "top",
    "bottom_right": "top_left",
}


@dataclass(frozen=True)
class Vocabulary:
    """The colours, shapes and sizes a world can draw (from its meta.json config)."""

    colors: tuple[str, ...]
    shapes: tuple[str, ...]
    sizes: tuple[str, ...]


@dataclass
class Corruption:
    text: str
    chosen_spans: list[Span]
    rejected_spans: list[Span]
    detail: str


def replace(text: str, start: int, end: int, new: str, detail: str) -> Corruption:
    """`text` with [start, end) replaced by `new`, the spans marked on both sides."""
    return Corruption(
        text[:start] + new + text[end:], [(start, end)], [(start, start + len(new))], detail
    )


def corrupt_description(
    kind: str, text: str, scene: Scene, vocab: Vocabulary, rng: np.random.Generator
) -> Corruption | None:
    """One corruption of `kind` that makes `text` unfaithful, or None if the scene offers
    none (a mirrored position needs an object off the centre)."""
    builders = {
        "object": _add_object,
        "attribute": _change_attribute,
        "count": _change_count,
        "relation": _mirror_position,
    }
    corruption = builders[kind](text, scene, vocab, rng)
    if corruption is None or score_description(corruption.text, scene).precision >= 1.0:
        return None
    return corruption


def _sentence_start(text: str, obj: SceneObject, scene: Scene) -> int:
    """Where the caption's sentence about `obj` begins (see text_en.detailed_caption)."""
    sentence = f"A {obj.size} {obj.color} {obj.shape} is {_POSITIONS[position_key(obj, scene)]}"
    start = text.find(sentence)
    if start < 0:
        raise ValueError(f"no sentence {sentence!r} in the description {text!r}")
    return start


def _pick(rng: np.random.Generator, options: list) -> object | None:
    return options[int(rng.integers(len(options)))] if options else None


def _present(scene: Scene) -> set[tuple[str, str]]:
    return {(obj.color, obj.shape) for obj in scene.objects}


def _add_object(text: str, scene: Scene, vocab: Vocabulary, rng: np.random.Generator):
    present = _present(scene)
    absent = [(c, s) for c in vocab.colors for s in vocab.shapes if (c, s) not in present]
    combo = _pick(rng, absent)
    if combo is None:
        return None
    color, shape = combo
    size = str(_pick(rng, list(vocab.sizes)))
    cell = str(_pick(rng, list(_POSITIONS)))
    sentence = f"A {size} {color} {shape} is {_POSITIONS[cell]}."
    # After a random existing sentence, so the hallucinated object is not always last.
    obj = _pick(rng, reading_order(scene))
    at = text.index(".", _sentence_start(text, obj, scene)) + 1
    new_text = text[:at] + " " + sentence + text[at:]
    return Corruption(
        new_text, [(at, at)], [(at, at + 1 + len(sentence))], f"added {size} {color} {shape}"
    )


def _change_attribute(text: str, scene: Scene, vocab: Vocabulary, rng: np.random.Generator):
    obj = _pick(rng, list(scene.objects))
    start = _sentence_start(text, obj, scene) + len("A ")
    present = _present(scene)
    sized = {o.size for o in scene.objects if (o.color, o.shape) == (obj.color, obj.shape)}
    options = {
        "size": [s for s in vocab.sizes if s not in sized],
        "color": [c for c in vocab.colors if (c, obj.shape) not in present],
        "shape": [s for s in vocab.shapes if (obj.color, s) not in present],
    }
    attribute = _pick(rng, [name for name, values in options.items() if values])
    if attribute is None:
        return None
    new = str(_pick(rng, options[attribute]))
    offset = {"size": 0, "color": len(obj.size) + 1, "shape": len(obj.size) + len(obj.color) + 2}
    old = getattr(obj, attribute)
    begin = start + offset[attribute]
    return replace(text, begin, begin + len(old), new, f"{attribute} {old} -> {new}")


def _change_count(text: str, scene: Scene, vocab: Vocabulary, rng: np.random.Generator):
    count = len(scene.objects)
    old = f"{count} {'object' if count == 1 else 'objects'}"
    start = text.find(old)
    if start < 0:
        return None
    new_count = count + int(_pick(rng, [-1, 1] if count > 1 else [1, 2]))
    new = f"{new_count} {'object' if new_count == 1 else 'objects'}"
    return replace(text, start, start + len(old), new, f"count {count} -> {new_count}")


def _mirror_position(text: str, scene: Scene, vocab: Vocabulary, rng: np.random.Generator):
    movable = [obj for obj in scene.objects if position_key(obj, scene) in _MIRROR]
    obj = _pick(rng, movable)
    if obj is None:
        return None
    cell = position_key(obj, scene)
    old, new = _POSITIONS[cell], _POSITIONS[_MIRROR[cell]]
    start = text.index(old, _sentence_start(text, obj, scene))
    return replace(text, start, start + len(old), new, f"position {cell} -> {_MIRROR[cell]}")


def corrupt_answer(
    question: dict, vocab: Vocabulary, rng: np.random.Generator
) -> Corruption | None:
    """A wrong answer to a world question: yes/no flipped, a count off by one, another
    colour, shape or size; None for answers with no controlled opposite (OCR labels)."""
    answer = str(question["answer"])
    yes, no = YES["en"], NO["en"]
    if question["type"] == "reasoning":
        verdict = answer.split(".", 1)[0]
        flipped = "No" if verdict == "Yes" else "Yes"
        return replace(answer, 0, len(verdict), flipped, f"verdict {verdict} -> {flipped}")
    if answer in (yes, no):
        new = no if answer == yes else yes
    elif answer.isdigit():
        new = str(int(answer) + int(_pick(rng, [-1, 1] if int(answer) > 0 else [1])))
    else:
        pools = (vocab.colors, vocab.shapes, vocab.sizes)
        pool = next((p for p in pools if answer in p), None)
        if pool is None:
            return None
        new = str(_pick(rng, [value for value in pool if value != answer]))
    return replace(answer, 0, len(answer), new, f"answer {answer} -> {new}")
