"""CHAIR (Rohrbach et al. 2018): object hallucination in generated captions.

CHAIR_i = hallucinated object mentions / all object mentions;
CHAIR_s = captions with at least one hallucinated object / all captions.

The objects are the world's shapes (its "categories", as COCO's 80 are for the original
metric). A mention is any singular, plural or synonym of a shape name in English
("discs" -> circle) or Chinese ("方块" -> square), read from ocelli.world.vocab so new
shapes or synonyms are picked up without touching this file. Adjectives that double as
shape words ("round") are not mentions. Like the original, negation is not parsed:
"there is no star" mentions a star.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ocelli.world.vocab import SHAPE_PLURALS, SHAPES, SHAPES_ZH, SYNONYMS_EN, SYNONYMS_ZH

_ADJECTIVES = frozenset({"round"})
_IRREGULAR_PLURALS = {"rhombus": ("rhombi", "rhombuses"), "box": ("boxes",)}


def _english_words() -> dict[str, str]:
    words: dict[str, str] = {}
    for shape in SHAPES:
        names = [shape] + [s for s in SYNONYMS_EN.get(shape, ()) if " " not in s]
        for name in names:
            if name in _ADJECTIVES:
                continue
            words[name] = shape
            plurals = _IRREGULAR_PLURALS.get(name, (SHAPE_PLURALS.get(name, name + "s"),))
            for form in plurals:
                words[form] = shape
    return words


def _chinese_words() -> dict[str, str]:
    words = {}
    for shape, name in SHAPES_ZH.items():
        words[name] = shape
        for synonym in SYNONYMS_ZH.get(name, ()):
            words[synonym] = shape
    return words


ENGLISH_OBJECT_WORDS: dict[str, str] = _english_words()
CHINESE_OBJECT_WORDS: dict[str, str] = _chinese_words()
_LONGEST_ZH = max(len(word) for word in CHINESE_OBJECT_WORDS)


def object_mentions(caption: str, lang: str = "en") -> list[str]:
    """The shapes a caption mentions, one entry per mention, in order."""
    if lang == "zh":
        return _chinese_mentions(caption)
    words = re.findall(r"[a-z]+", caption.lower())
    return [ENGLISH_OBJECT_WORDS[w] for w in words if w in ENGLISH_OBJECT_WORDS]


def _chinese_mentions(caption: str) -> list[str]:
    """Longest match first, left to right: "正方形" is one square, not a "方形" too, and
    "五角星" (star) is not read as "五角形" (pentagon)."""
    mentions, index = [], 0
    while index < len(caption):
        for length in range(min(_LONGEST_ZH, len(caption) - index), 0, -1):
            word = caption[index : index + length]
            if word in CHINESE_OBJECT_WORDS:
                mentions.append(CHINESE_OBJECT_WORDS[word])
                index += length
                break
        else:
            index += 1
    return mentions


@dataclass
class ChairCaption:
    """One caption's mentions checked against its image's objects."""

    mentions: list[str]
    hallucinated: list[str]
    covered: set[str]
    truth: set[str]


def chair_caption(caption: str, truth_shapes: Iterable[str], lang: str = "en") -> ChairCaption:
    truth = set(truth_shapes)
    mentions = object_mentions(caption, lang)
    return ChairCaption(
        mentions=mentions,
        hallucinated=[m for m in mentions if m not in truth],
        covered={m for m in mentions if m in truth},
        truth=truth,
    )


def chair_metrics(captions: Sequence[ChairCaption]) -> dict[str, float]:
    """CHAIR_i, CHAIR_s, and recall (the share of the images' objects mentioned), with
    the counts they come from. A caption without any mention is not hallucinated."""
    mentions = sum(len(c.mentions) for c in captions)
    hallucinated = sum(len(c.hallucinated) for c in captions)
    bad_captions = sum(bool(c.hallucinated) for c in captions)
    truth = sum(len(c.truth) for c in captions)
    covered = sum(len(c.covered) for c in captions)
    return {
        "chair_i": hallucinated / mentions if mentions else 0.0,
        "chair_s": bad_captions / len(captions) if captions else 0.0,
        "recall": covered / truth if truth else 0.0,
        "num_captions": len(captions),
        "num_mentions": mentions,
        "num_hallucinated": hallucinated,
        "mean_mentions": mentions / len(captions) if captions else 0.0,
    }
