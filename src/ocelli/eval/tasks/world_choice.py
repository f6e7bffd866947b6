"""Built-in MME-style and MMBench-style tasks on a world split's scenes.

mme: per image and subtask two yes/no questions, one true and one false (existence,
count, color, position), as MME pairs them; scored with acc, acc+ and score.
mmbench_circular: per image one four-option question (the colour of an object, or the
shape of one), asked four times with the options rotated (CircularEval).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ocelli.eval.metrics import (
    circular_metrics,
    extract_choice,
    format_options,
    mme_metrics,
    mme_parse,
    rotations,
)
from ocelli.eval.tasks.base import Aggregate, Sample, Task, register_task
from ocelli.eval.tasks.world_sampling import (
    ObjectStats,
    a_phrase,
    absent_objects,
    combos,
    image_rng,
    the_phrase,
    uniquely_named,
)
from ocelli.world.loading import load_scenes
from ocelli.world.scenes import Scene
from ocelli.world.vocab import COLORS, SHAPES

SEED = 0
MME_SUFFIX = " Please answer yes or no."  # MME's own instruction
MIN_SEPARATION = 0.06  # of the image width: no near-ties in left/right, as in the world
MMB_PROMPT = (
    "{question}\n{options}\nAnswer with the option's letter from the given choices directly."
)


def _mme_pairs(
    scene: Scene, stats: ObjectStats, rng: np.random.Generator
) -> dict[str, tuple[str, str]]:
    """subtask -> (question whose answer is yes, question whose answer is no)."""
    pairs: dict[str, tuple[str, str]] = {}
    present = combos(scene)
    absent = absent_objects(present, stats, "random", 1, rng)
    if absent:
        shown = present[int(rng.integers(len(present)))]
        pairs["existence"] = (
            f"Is there {a_phrase(shown)} in the image?",
            f"Is there {a_phrase(absent[0])} in the image?",
        )
    count = len(scene.objects)
    wrong = count + 1 if count == 1 or rng.random() < 0.5 else count - 1
    pairs["count"] = (_count_question(count), _count_question(wrong))
    by_shape = [o for o in scene.objects if sum(p.shape == o.shape for p in scene.objects) == 1]
    if by_shape:
        obj = by_shape[int(rng.integers(len(by_shape)))]
        other = [c for c in COLORS if c != obj.color][int(rng.integers(len(COLORS) - 1))]
        pairs["color"] = (f"Is the {obj.shape} {obj.color}?", f"Is the {obj.shape} {other}?")
    named = uniquely_named(scene)
    apart = [
        (a, b)
        for a in named
        for b in named
        if b.center[0] - a.center[0] >= MIN_SEPARATION * scene.width
    ]
    if apart:
        left, right = apart[int(rng.integers(len(apart)))]
        pairs["position"] = (
            f"Is the {the_phrase(left)} on the left of the {the_phrase(right)}?",
            f"Is the {the_phrase(right)} on the left of the {the_phrase(left)}?",
        )
    return pairs


def _count_question(count: int) -> str:
    return (
        "Is there 1 object in the image?"
        if count == 1
        else f"Are there {count} objects in the image?"
    )


def _mme_build(data_dir: Path) -> list[Sample]:
    scenes = load_scenes(data_dir)
    stats = ObjectStats.from_scenes(scenes)
    samples = []
    for scene in scenes:
        rng = image_rng(SEED, scene.id, "mme")
        for subtask, questions in _mme_pairs(scene, stats, rng).items():
            for question, truth in zip(questions, ("yes", "no"), strict=True):
                samples.append(
                    Sample(
                        id=f"{scene.id}_mme_{subtask}_{truth}",
                        images=[str(data_dir / (scene.image or ""))],
                        prompt=question + MME_SUFFIX,
                        truth=truth,
                        meta={"image_id": scene.id, "subtask": subtask, "lang": "en"},
                    )
                )
    return samples


def _mme_aggregate(records: list[dict[str, Any]]) -> Aggregate:
    per_subtask = mme_metrics(
        (r["meta"]["subtask"], r["meta"]["image_id"], r["score"] == 1.0) for r in records
    )
    metrics: dict[str, Any] = {
        "total_score": sum(m["score"] for m in per_subtask.values()),
        "by_subtask": per_subtask,
        "num_samples": len(records),
    }
    categories = {
        "MME score by subtask (0-200)": {k: m["score"] for k, m in per_subtask.items()},
    }
    return Aggregate(metrics, {r["id"]: r["score"] for r in records}, categories)


@register_task("mme")
def mme() -> Task:
    return Task(
        name="mme",
        description="MME-style yes/no pairs per image: existence, count, color, position",
        build=_mme_build,
        extract=lambda raw, sample: mme_parse(raw),
        score=lambda answer, sample: float(answer == sample.truth),
        aggregate=_mme_aggregate,
        primary_metric="total_score",
        max_new_tokens=16,
        prompt_template="{question}" + MME_SUFFIX,
        protocol={"seed": SEED, "subtasks": ["existence", "count", "color", "position"]},
        candidates=lambda sample: ["yes", "no"],
    )


def _mmb_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str, list[str]] | None:
    """(question, right option, distractors) about one object, or None if none is nameable."""
    by_shape = [o for o in scene.objects if sum(p.shape == o.shape for p in scene.objects) == 1]
    by_color = [o for o in scene.objects if sum(p.color == o.color for p in scene.objects) == 1]
    kinds = [k for k, objs in (("color", by_shape), ("shape", by_color)) if objs]
    if not kinds:
        return None
    kind = kinds[int(rng.integers(len(kinds)))]
    objects = by_shape if kind == "color" else by_color
    obj = objects[int(rng.integers(len(objects)))]
    if kind == "color":
        question, right, pool = f"What color is the {obj.shape}?", obj.color, list(COLORS)
    else:
        question, right, pool = f"What shape is the {obj.color} object?", obj.shape, list(SHAPES)
    pool.remove(right)
    distractors = [pool[i] for i in rng.choice(len(pool), 3, replace=False)]
    return question, right, distractors


def _mmb_build(data_dir: Path) -> list[Sample]:
    samples = []
    for scene in load_scenes(data_dir):
        rng = image_rng(SEED, scene.id, "mmbench")
        made = _mmb_question(scene, rng)
        if made is None:
            continue
        question, right, distractors = made
        options = [right, *distractors]
        options = [options[i] for i in rng.permutation(len(options))]
        for shift, rotated in enumerate(rotations(options)):
            samples.append(
                Sample(
                    id=f"{scene.id}_mmb_r{shift}",
                    images=[str(data_dir / (scene.image or ""))],
                    prompt=MMB_PROMPT.format(question=question, options=format_options(rotated)),
                    truth="ABCD"[rotated.index(right)],
                    meta={
                        "question_id": scene.id,
                        "rotation": shift,
                        "num_rotations": len(options),
                        "options": rotated,
                        "lang": "en",
                    },
                )
            )
    return samples


def _mmb_aggregate(records: list[dict[str, Any]]) -> Aggregate:
    rows = [
        (
            r["meta"]["question_id"],
            r["meta"]["rotation"],
            r["meta"]["num_rotations"],
            r["score"] == 1.0,
        )
        for r in records
    ]
    metrics: dict[str, Any] = circular_metrics(rows)
    metrics["unparsed"] = sum(r["answer"] is None for r in records)
    metrics["num_samples"] = len(records)
    by_question: dict[str, list[float]] = {}
    for r in records:
        by_question.setdefault(r["meta"]["question_id"], []).append(r["score"])
    units = {q: float(all(s == 1.0 for s in scores)) for q, scores in by_question.items()}
    letters = {letter: sum(r["answer"] == letter for r in records) for letter in "ABCD"}
    categories = {"answers by option letter (counts)": letters}
    return Aggregate(metrics, units, categories)


@register_task("mmbench_circular")
def mmbench_circular() -> Task:
    return Task(
        name="mmbench_circular",
        description="MMBench-style 4-option questions with CircularEval (4 rotations each)",
        build=_mmb_build,
        extract=lambda raw, sample: extract_choice(raw, sample.meta["options"]),
        score=lambda answer, sample: float(answer == sample.truth),
        aggregate=_mmb_aggregate,
        primary_metric="circular_accuracy",
        max_new_tokens=8,
        prompt_template=MMB_PROMPT,
        protocol={"seed": SEED, "extraction": "letter, else the one option named; no model judge"},
        candidates=lambda sample: list("ABCD"[: len(sample.meta["options"])]),
    )
