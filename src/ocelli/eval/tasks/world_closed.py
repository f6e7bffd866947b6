"""Built-in closed-answer tasks on a world split: world_vqa, pope_{random,popular,
adversarial}, mme and mmbench_circular. Each builds its samples from the split's
questions.jsonl or scenes.jsonl (see docs/evaluation.md for the protocols)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocelli.eval.metrics import pope_parse
from ocelli.eval.tasks.base import (
    Aggregate,
    Sample,
    Task,
    accuracy_aggregate,
    register_task,
    yes_no_aggregate,
)
from ocelli.eval.tasks.world_sampling import (
    NEGATIVE_SAMPLING,
    ObjectStats,
    a_phrase,
    absent_objects,
    combos,
    image_rng,
)
from ocelli.eval.world_vqa import is_correct, load_questions, normalize_answer, verdict
from ocelli.world.loading import load_scenes
from ocelli.world.vocab import COLORS, NO, SHAPES, SIDES, SIZES, YES, answer_synonyms, translate

SEED = 0  # every per-image choice below is seeded from this and the image id
POPE_PER_IMAGE = 3  # present and as many absent objects per image, as in POPE
YES_NO = ["yes", "no"]
# The closed answer sets of the world's questions, in English; an answer's set is the one
# it belongs to (digits: counts up to 9).
ANSWER_SETS: tuple[tuple[str, ...], ...] = (
    ("yes", "no"),
    tuple(COLORS),
    SHAPES,
    tuple(SIZES),
    ("left", "right"),
    ("top", "bottom"),
    tuple(str(count) for count in range(10)),
)


def answer_candidates(truth: str, lang: str) -> list[str] | None:
    """Every answer of the closed set `truth` belongs to, in `lang`; None for an answer
    outside them (a reasoning question's rationale)."""
    for words in ANSWER_SETS:
        names = [_name(word, lang) for word in words]
        if truth in names:
            return names
    return None


def _name(word: str, lang: str) -> str:
    if word in ("yes", "no"):
        return (YES if word == "yes" else NO)[lang]
    if word in SIDES["en"]:
        return SIDES[lang][word]
    return translate(word, lang)


def world_vqa_samples(data_dir: Path) -> list[Sample]:
    """One sample per question of the split's questions.jsonl."""
    return [
        Sample(
            id=str(q.get("id", index)),
            images=[str(data_dir / q["image"])],
            prompt=q["question"],
            truth=q["answer"],
            meta={k: q.get(k) for k in ("type", "subtype", "lang", "heldout")},
        )
        for index, q in enumerate(load_questions(data_dir))
    ]


def _relaxed(raw: str, truth: str, lang: str, question_type: str = "") -> bool:
    """The canonical answer or a synonym of it anywhere in the first line of the output;
    for reasoning questions, as for their exact score, only the verdict before the
    rationale counts, on both sides."""
    clip = verdict if question_type == "reasoning" else normalize_answer
    text = clip(raw)
    words = set(text.replace(",", " ").split()) if lang == "en" else None
    for form in answer_synonyms(clip(truth), lang):
        if (form in words) if words is not None else (form in text):
            return True
    return False


def _world_vqa_aggregate(records: list[dict[str, Any]]) -> Aggregate:
    result = accuracy_aggregate(("type", "lang", "heldout"))(records)
    relaxed = [
        _relaxed(r["raw"], r["truth"], r["meta"].get("lang", "en"), r["meta"].get("type") or "")
        for r in records
    ]
    result.metrics["relaxed_accuracy"] = sum(relaxed) / len(relaxed) if relaxed else 0.0
    return result


@register_task("world_vqa")
def world_vqa() -> Task:
    return Task(
        name="world_vqa",
        description="the world's questions (8 types, en/zh, held-out phrasings), exact match",
        build=world_vqa_samples,
        extract=lambda raw, sample: normalize_answer(raw),
        score=lambda answer, sample: float(
            is_correct(answer, sample.truth, sample.meta.get("type") or "")
        ),
        aggregate=_world_vqa_aggregate,
        primary_metric="accuracy",
        max_new_tokens=24,
        candidates=lambda sample: answer_candidates(sample.truth, sample.meta.get("lang") or "en"),
    )


# --- POPE -------------------------------------------------------------------------------

POPE_TEMPLATE = "Is there {object} in the image?"


def _pope_build(data_dir: Path, how: str) -> list[Sample]:
    scenes = load_scenes(data_dir)
    stats = ObjectStats.from_scenes(scenes)
    samples = []
    for scene in scenes:
        present = combos(scene)
        if len(present) < POPE_PER_IMAGE:
            continue  # POPE asks only about images with at least 3 objects
        rng = image_rng(SEED, scene.id, f"pope-{how}")
        chosen = [present[i] for i in sorted(rng.choice(len(present), POPE_PER_IMAGE, False))]
        absent = absent_objects(present, stats, how, POPE_PER_IMAGE, rng)
        for index, (combo, truth) in enumerate(
            [(c, "yes") for c in chosen] + [(c, "no") for c in absent]
        ):
            samples.append(
                Sample(
                    id=f"{scene.id}_pope{index}",
                    images=[str(data_dir / (scene.image or ""))],
                    prompt=POPE_TEMPLATE.format(object=a_phrase(combo)),
                    truth=truth,
                    meta={"image_id": scene.id, "object": " ".join(combo), "lang": "en"},
                )
            )
    return samples


def _pope_task(how: str) -> Task:
    return Task(
        name=f"pope_{how}",
        description=f"POPE, {how} negatives: 3 present + 3 absent colour-shape objects per image",
        build=lambda data_dir: _pope_build(data_dir, how),
        extract=lambda raw, sample: pope_parse(raw, sample.meta.get("lang", "en")),
        score=lambda answer, sample: float(answer == sample.truth),
        aggregate=yes_no_aggregate,
        primary_metric="f1",
        max_new_tokens=16,
        prompt_template=POPE_TEMPLATE,
        protocol={"negative_sampling": how, "per_image": POPE_PER_IMAGE, "seed": SEED},
        candidates=lambda sample: YES_NO,
    )


for _how in NEGATIVE_SAMPLING:
    register_task(f"pope_{_how}")(lambda how=_how: _pope_task(how))
