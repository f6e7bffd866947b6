"""LRV-style instructions (Liu et al. 2023): questions about absent objects or wrong
attributes whose right answer says so, beside their positive twins.

Training only on questions whose answer is "yes" teaches a model to agree; LRV's
negative instructions teach it to deny. Each scene gets one existence and one attribute
question; a coin with probability `yes_ratio` decides whether each is about something
true (answer yes) or false (answer no), and the ratio actually drawn is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ocelli.align.corruptions import Vocabulary
from ocelli.world.scenes import Scene
from ocelli.world.spec import position_key
from ocelli.world.text_en import _POSITIONS


@dataclass
class Instruction:
    """A yes/no question with its right answer and the wrong one."""

    question: str
    answer: str
    wrong: str
    is_yes: bool
    detail: str


def negative_instructions(
    scene: Scene, vocab: Vocabulary, rng: np.random.Generator, yes_ratio: float = 0.5
) -> list[Instruction]:
    """Up to two instructions for `scene`: existence, then attribute (size)."""
    items = [_existence(scene, vocab, rng, rng.random() < yes_ratio)]
    attribute = _size(scene, vocab, rng, rng.random() < yes_ratio)
    return [item for item in [*items, attribute] if item is not None]


def _article(phrase: str) -> str:
    return f"an {phrase}" if phrase[0] in "aeiou" else f"a {phrase}"


def _existence(
    scene: Scene, vocab: Vocabulary, rng: np.random.Generator, positive: bool
) -> Instruction | None:
    present = sorted({(obj.color, obj.shape) for obj in scene.objects})
    absent = [(c, s) for c in vocab.colors for s in vocab.shapes if (c, s) not in present]
    pool = present if positive or not absent else absent
    positive = pool is present
    color, shape = pool[int(rng.integers(len(pool)))]
    name = f"{color} {shape}"
    question = f"Is there {_article(name)} in the image?"
    if positive:
        obj = next(o for o in scene.objects if (o.color, o.shape) == (color, shape))
        where = _POSITIONS[position_key(obj, scene)]
        answer = f"Yes, there is {_article(name)} {where}."
    else:
        answer = f"No, there is no {name} in the image."
    wrong = (
        f"Yes, there is {_article(name)} in the image."
        if not positive
        else (f"No, there is no {name} in the image.")
    )
    return Instruction(question, answer, wrong, positive, f"existence {name}")


def _size(
    scene: Scene, vocab: Vocabulary, rng: np.random.Generator, positive: bool
) -> Instruction | None:
    """ "Is the red circle large?" about an object its colour and shape name uniquely."""
    pairs = [(o.color, o.shape) for o in scene.objects]
    unique = [o for o in scene.objects if pairs.count((o.color, o.shape)) == 1]
    if not unique:
        return None
    obj = unique[int(rng.integers(len(unique)))]
    others = [size for size in vocab.sizes if size != obj.size]
    asked = obj.size if positive or not others else others[int(rng.integers(len(others)))]
    name = f"{obj.color} {obj.shape}"
    question = f"Is the {name} {asked}?"
    if asked == obj.size:
        answer = f"Yes, the {name} is {obj.size}."
        wrong = f"No, the {name} is not {obj.size}."
    else:
        answer = f"No, the {name} is {obj.size}, not {asked}."
        wrong = f"Yes, the {name} is {asked}."
    return Instruction(question, answer, wrong, asked == obj.size, f"size {name} asked {asked}")
