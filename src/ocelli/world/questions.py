"""Questions with exact answers, drawn from a scene graph.

One generator per question type returns a `QuestionSpec` (or None when the scene
offers no well-posed question of that type). Objects are only named when the name is
unique in the scene ("the red circle", "the circle" or "the red object"), and spatial
questions need a clear margin between centres, so every answer is unambiguous.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from ocelli.world import text
from ocelli.world.config import WorldConfig
from ocelli.world.scenes import Scene, SceneObject
from ocelli.world.sort_of_clevr import sort_of_clevr_questions
from ocelli.world.spec import Answer, QuestionSpec, Ref
from ocelli.world.splits import STREAMS, allowed_combos
from ocelli.world.vocab import SIZE_RANK

# Which template families each question type uses.
TYPE_FAMILIES: dict[str, tuple[str, ...]] = {
    "existence": ("existence",),
    "attribute": ("attribute_color", "attribute_shape", "attribute_size"),
    "count": ("count",),
    "spatial": ("spatial",),
    "comparison": ("comparison_size", "comparison_same"),
    "extreme": ("extreme",),
    "ocr": ("ocr",),
    "reasoning": ("reasoning",),
    "non-relational": ("soc_shape", "soc_horizontal", "soc_vertical"),
    "relational": ("soc_closest", "soc_furthest", "soc_count_same"),
}
POSITION_MARGIN = 0.06  # centres closer than this fraction of the image are "level"
SHAPE_ONLY_EXISTENCE = 0.3  # share of existence questions that name a shape only

T = TypeVar("T")


def _pick(rng: np.random.Generator, items: Sequence[T]) -> T:
    return items[int(rng.integers(len(items)))]


class SceneFacts:
    """Counts and unique names of one scene's objects, computed once per scene."""

    def __init__(self, scene: Scene, config: WorldConfig):
        self.scene = scene
        self.config = config
        self.objects = sorted(scene.objects, key=lambda o: o.id)
        self.margin = max(2, round(POSITION_MARGIN * scene.width))
        self.shape_counts = Counter(o.shape for o in self.objects)
        self.color_counts = Counter(o.color for o in self.objects)
        self.combo_counts = Counter((o.color, o.shape) for o in self.objects)

    def names(self, obj: SceneObject, avoid: str | None = None) -> list[Ref]:
        """Every unique way to name `obj`, leaving out the attribute `avoid`."""
        names = []
        if self.combo_counts[(obj.color, obj.shape)] == 1 and avoid is None:
            names.append(Ref(obj.color, obj.shape))
        if self.shape_counts[obj.shape] == 1 and avoid != "shape":
            names.append(Ref(shape=obj.shape))
        if self.color_counts[obj.color] == 1 and avoid != "color":
            names.append(Ref(color=obj.color))
        return names

    def nameable(self, avoid: str | None = None) -> list[SceneObject]:
        return [o for o in self.objects if self.names(o, avoid)]

    def name(self, obj: SceneObject, rng: np.random.Generator, avoid: str | None = None) -> Ref:
        return _pick(rng, self.names(obj, avoid))


def _existence(facts: SceneFacts, rng: np.random.Generator) -> QuestionSpec | None:
    # Each question flips a fair coin for its answer, so yes and no stay balanced; "no"
    # questions name a combination the world can produce but this scene lacks.
    want_yes = bool(rng.random() < 0.5)
    if rng.random() < SHAPE_ONLY_EXISTENCE:
        subtype = "shape"
        present = list(facts.shape_counts)
        absent = [s for s in facts.config.shapes if s not in facts.shape_counts]
        pool = [Ref(shape=s) for s in (present if want_yes else absent)]
    else:
        subtype = "color_shape"
        present = list(facts.combo_counts)
        absent = [c for c in allowed_combos(facts.config) if c not in facts.combo_counts]
        pool = [Ref(c, s) for c, s in (present if want_yes else absent)]
    if not pool:
        return None
    return QuestionSpec(
        "existence", subtype, "existence", {"a": _pick(rng, pool)}, Answer("yes_no", want_yes)
    )


def _attribute(facts: SceneFacts, rng: np.random.Generator) -> QuestionSpec | None:
    pools = {"color": facts.nameable(avoid="color"), "shape": facts.nameable(avoid="shape")}
    if len(facts.config.sizes) > 1:
        pools["size"] = facts.nameable()
    subtypes = [name for name, pool in pools.items() if pool]
    if not subtypes:
        return None
    subtype = _pick(rng, subtypes)
    obj = _pick(rng, pools[subtype])
    ref = facts.name(obj, rng, avoid=subtype if subtype != "size" else None)
    return QuestionSpec(
        "attribute",
        subtype,
        f"attribute_{subtype}",
        {"a": ref},
        Answer(subtype, getattr(obj, subtype)),
    )


def _count(facts: SceneFacts, rng: np.random.Generator) -> QuestionSpec | None:
    draw = rng.random()
    if draw >= 0.8:
        return QuestionSpec(
            "count", "total", "count", {"a": Ref()}, Answer("count", len(facts.objects))
        )
    attribute = "shape" if draw < 0.4 else "color"
    counts = facts.shape_counts if attribute == "shape" else facts.color_counts
    names = facts.config.shapes if attribute == "shape" else facts.config.colors
    present = list(counts)
    absent = [n for n in names if n not in counts]
    # Mostly ask about things that are there; sometimes about absent ones (answer 0).
    target = _pick(rng, present if not absent or rng.random() < 0.75 else absent)
    ref = Ref(shape=target) if attribute == "shape" else Ref(color=target)
    return QuestionSpec("count", attribute, "count", {"a": ref}, Answer("count", counts[target]))


def _spatial(facts: SceneFacts, rng: np.random.Generator) -> QuestionSpec | None:
    objects = facts.nameable()
    candidates = []
    for a in objects:
        for b in objects:
            if a.id == b.id:
                continue
            if abs(a.center[0] - b.center[0]) >= facts.margin:
                candidates.append((a, b, ("left", "right")))
            if abs(a.center[1] - b.center[1]) >= facts.margin:
                candidates.append((a, b, ("above", "below")))
    if not candidates:
        return None
    a, b, relations = _pick(rng, candidates)
    relation = _pick(rng, relations)
    truth = {
        "left": a.center[0] < b.center[0],
        "right": a.center[0] > b.center[0],
        "above": a.center[1] < b.center[1],
        "below": a.center[1] > b.center[1],
    }[relation]
    slots = {"a": facts.name(a, rng), "b": facts.name(b, rng), "rel": relation}
    return QuestionSpec("spatial", relation, "spatial", slots, Answer("yes_no", truth))


def _pairs(objects: list[SceneObject]) -> list[tuple[SceneObject, SceneObject]]:
    return [(a, b) for a in objects for b in objects if a.id < b.id]


def _comparison(facts: SceneFacts, rng: np.random.Generator) -> QuestionSpec | None:
    pools = {
        "same_color": _pairs(facts.nameable(avoid="color")),
        "same_shape": _pairs(facts.nameable(avoid="shape")),
    }
    if len(facts.config.sizes) > 1:
        pools["size"] = _pairs(facts.nameable())
    subtypes = [name for name, pool in pools.items() if pool]
    if not subtypes:
        return None
    subtype = _pick(rng, subtypes)
    pairs = pools[subtype]
    if subtype == "size":
        # Equal sizes make both "larger" and "smaller" false; mostly compare unequal
        # sizes so that yes and no stay close to balanced.
        unequal = [(a, b) for a, b in pairs if a.size != b.size]
        a, b = _pick(rng, unequal if unequal and rng.random() < 0.8 else pairs)
        if rng.random() < 0.5:
            a, b = b, a
        cmp = _pick(rng, ("larger", "smaller"))
        rank_a, rank_b = SIZE_RANK[a.size], SIZE_RANK[b.size]
        truth = rank_a > rank_b if cmp == "larger" else rank_a < rank_b
        slots = {"a": facts.name(a, rng), "b": facts.name(b, rng), "cmp": cmp}
        return QuestionSpec("comparison", cmp, "comparison_size", slots, Answer("yes_no", truth))
    attribute = subtype.removeprefix("same_")
    matching = [(a, b) for a, b in pairs if getattr(a, attribute) == getattr(b, attribute)]
    # Matching pairs are rare; ask about them half the time when there are any.
    a, b = _pick(rng, matching if matching and rng.random() < 0.5 else pairs)
    if rng.random() < 0.5:
        a, b = b, a
    slots = {
        "a": facts.name(a, rng, avoid=attribute),
        "b": facts.name(b, rng, avoid=attribute),
        "attr": attribute,
    }
    truth = getattr(a, attribute) == getattr(b, attribute)
    return QuestionSpec("comparison", subtype, "comparison_same", slots, Answer("yes_no", truth))


def _extreme_objects(facts: SceneFacts) -> list[tuple[str, SceneObject]]:
    """(extreme, object) for every extreme that one object holds clearly."""
    found = []
    measures: list[tuple[str, Callable[[SceneObject], float], float]] = [
        ("largest", lambda o: -SIZE_RANK[o.size], 1),
        ("smallest", lambda o: SIZE_RANK[o.size], 1),
        ("leftmost", lambda o: o.center[0], facts.margin),
        ("rightmost", lambda o: -o.center[0], facts.margin),
        ("topmost", lambda o: o.center[1], facts.margin),
        ("bottommost", lambda o: -o.center[1], facts.margin),
    ]
    for extreme, measure, margin in measures:
        ranked = sorted(facts.objects, key=measure)
        if measure(ranked[1]) - measure(ranked[0]) >= margin:
            found.append((extreme, ranked[0]))
    return found


def _extreme(facts: SceneFacts, rng: np.random.Generator) -> QuestionSpec | None:
    if len(facts.objects) < 2:
        return None
    options = _extreme_objects(facts)
    if not options:
        return None
    extreme, obj = _pick(rng, options)
    attribute = _pick(rng, ("color", "shape"))
    return QuestionSpec(
        "extreme",
        f"{extreme}_{attribute}",
        "extreme",
        {"ext": extreme, "attr": attribute},
        Answer(attribute, getattr(obj, attribute)),
    )


def _ocr(facts: SceneFacts, rng: np.random.Generator) -> QuestionSpec | None:
    # Only labels on objects that nothing covers: the whole word must be readable.
    pool = [o for o in facts.nameable() if o.label and not o.occluded_by]
    if not pool:
        return None
    obj = _pick(rng, pool)
    return QuestionSpec(
        "ocr", "label", "ocr", {"a": facts.name(obj, rng)}, Answer("word", obj.label)
    )


def _reasoning(facts: SceneFacts, rng: np.random.Generator) -> QuestionSpec | None:
    attribute = "shape" if rng.random() < 0.5 else "color"
    counts = facts.shape_counts if attribute == "shape" else facts.color_counts
    names = facts.config.shapes if attribute == "shape" else facts.config.colors
    if len(names) < 2:
        return None
    x = _pick(rng, list(counts))
    y = _pick(rng, [n for n in names if n != x])
    if rng.random() < 0.5:
        x, y = y, x
    x_ref, y_ref = (
        (Ref(shape=x), Ref(shape=y)) if attribute == "shape" else (Ref(color=x), Ref(color=y))
    )
    answer = Answer("reasoning", counts[x] > counts[y], ((x_ref, counts[x]), (y_ref, counts[y])))
    return QuestionSpec(
        "reasoning", f"more_{attribute}s", "reasoning", {"a": x_ref, "b": y_ref}, answer
    )


GENERATORS: dict[str, Callable[[SceneFacts, np.random.Generator], QuestionSpec | None]] = {
    "existence": _existence,
    "attribute": _attribute,
    "count": _count,
    "spatial": _spatial,
    "comparison": _comparison,
    "extreme": _extreme,
    "ocr": _ocr,
    "reasoning": _reasoning,
}


def sample_questions(
    scene: Scene, config: WorldConfig, rng: np.random.Generator
) -> list[QuestionSpec]:
    """Up to `questions_per_image` distinct questions, cycling through the types in a
    shuffled order so that every type appears before any repeats."""
    config = config.resolve()
    if config.mode == "sort-of-clevr":
        return sort_of_clevr_questions(scene, rng)
    types = [t for t in config.question_types if t != "ocr" or config.text_labels > 0]
    facts = SceneFacts(scene, config)
    chosen: list[QuestionSpec] = []
    seen: set[tuple] = set()
    queue: list[str] = []
    for _ in range(4 * config.questions_per_image + len(types)):
        if len(chosen) == config.questions_per_image:
            break
        if not queue:
            queue = [types[i] for i in rng.permutation(len(types))]
        spec = GENERATORS[queue.pop(0)](facts, rng)
        if spec is not None and spec.key() not in seen:
            seen.add(spec.key())
            chosen.append(spec)
    return chosen


def phrase_questions(
    specs: list[QuestionSpec], lang: str, rng: np.random.Generator, allow_heldout: bool
) -> list[dict[str, Any]]:
    """Word each spec in `lang` with a randomly chosen template of its family."""
    items = []
    for spec in specs:
        index = text.choose_template(spec.family, lang, rng, allow_heldout)
        last = len(text.templates(lang, spec.family)) - 1
        items.append(
            {
                "lang": lang,
                "type": spec.type,
                "subtype": spec.subtype,
                "template": f"{spec.family}/{index}",
                "heldout": index == last,
                "question": text.phrase_question(spec, lang, index),
                "answer": text.answer_text(spec.answer, lang),
                "short_answer": text.short_answer(spec.answer, lang),
            }
        )
    return items


def questions_for_scene(
    scene: Scene,
    config: WorldConfig | None = None,
    seed: int = 0,
    langs: list[str] | None = None,
    allow_heldout: bool = True,
) -> list[dict[str, Any]]:
    """Questions and answers about `scene` in each language, drawn from `seed`."""
    config = (config or WorldConfig()).resolve()

    def stream(name: str) -> np.random.Generator:
        sequence = np.random.SeedSequence([int(seed), STREAMS[name]])
        return np.random.Generator(np.random.PCG64(sequence))

    specs = sample_questions(scene, config, stream("questions"))
    items = []
    for lang in langs or config.langs:
        items.extend(phrase_questions(specs, lang, stream(lang), allow_heldout))
    return items
