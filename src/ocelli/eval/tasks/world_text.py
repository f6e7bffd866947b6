"""Built-in open-ended tasks on a world split: caption (CIDEr-D, BLEU-4, ROUGE-L, METEOR
against the short captions), chair (object hallucination in detailed descriptions) and
faith (exact claim-level precision and recall of detailed descriptions against the
scene graph). chair and faith run per image and language found in captions.jsonl."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ocelli.eval.metrics import (
    caption_metrics,
    chair_caption,
    chair_metrics,
    claim_metrics,
    score_description,
)
from ocelli.eval.metrics.caption import CAPTION_METRICS
from ocelli.eval.metrics.claims import ClaimScore
from ocelli.eval.tasks.base import Aggregate, Sample, Task, register_task
from ocelli.world import text_en, text_zh
from ocelli.world.loading import load_captions, load_scenes
from ocelli.world.scenes import Scene

# The first phrasing of each family: what the world's conversations train on.
BRIEF_PROMPTS = {"en": text_en.SHORT_CAPTION_PROMPTS[0], "zh": text_zh.SHORT_CAPTION_PROMPTS[0]}
DETAILED_PROMPTS = {
    "en": text_en.DETAILED_CAPTION_PROMPTS[0],
    "zh": text_zh.DETAILED_CAPTION_PROMPTS[0],
}
DETAILED_MAX_NEW_TOKENS = 192


def _caption_build(data_dir: Path) -> list[Sample]:
    references: dict[str, list[str]] = defaultdict(list)
    images: dict[str, str] = {}
    for row in load_captions(data_dir):
        if row["lang"] == "en":
            key = str(row.get("image_id") or row["image"])
            references[key].append(row["short"])
            images[key] = row["image"]
    return [
        Sample(
            id=f"{key}_caption",
            images=[str(data_dir / images[key])],
            prompt=BRIEF_PROMPTS["en"],
            truth=refs,
            meta={"image_id": key, "lang": "en"},
        )
        for key, refs in references.items()
    ]


def _caption_aggregate(records: list[dict[str, Any]]) -> Aggregate:
    if not records:
        return Aggregate({"num_samples": 0}, {})
    values, per_image = caption_metrics(
        {r["id"]: r["truth"] for r in records}, {r["id"]: r["answer"] for r in records}
    )
    return Aggregate({**values, "num_samples": len(records)}, per_image)


@register_task("caption")
def caption() -> Task:
    return Task(
        name="caption",
        description="brief captions (en) scored against the world's short captions",
        build=_caption_build,
        extract=lambda raw, sample: raw.strip(),
        score=lambda answer, sample: None,  # corpus metrics: per image in aggregate
        aggregate=_caption_aggregate,
        primary_metric="cider",
        max_new_tokens=48,
        prompt_template=BRIEF_PROMPTS["en"],
        protocol={
            "metrics": list(CAPTION_METRICS),
            "tokenizer": "PTB (pycocoevalcap, Java)",
            "idf": "computed over the evaluated images",
        },
    )


def _detailed_build(data_dir: Path) -> list[Sample]:
    """One sample per image and language; the truth is the scene graph itself."""
    scenes = {scene.id: scene for scene in load_scenes(data_dir)}
    samples = []
    for row in load_captions(data_dir):
        scene = scenes.get(str(row.get("image_id")))
        if scene is None or row["lang"] not in DETAILED_PROMPTS:
            continue
        samples.append(
            Sample(
                id=f"{scene.id}_{row['lang']}_detailed",
                images=[str(data_dir / row["image"])],
                prompt=DETAILED_PROMPTS[row["lang"]],
                truth=scene.to_dict(),
                meta={"image_id": scene.id, "lang": row["lang"]},
            )
        )
    return samples


def _by_lang(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[record["meta"]["lang"]].append(record)
    return dict(sorted(groups.items()))


def _chair_of(record: dict[str, Any]):
    shapes = [obj["shape"] for obj in record["truth"]["objects"]]
    return chair_caption(record["raw"], shapes, record["meta"]["lang"])


def _chair_aggregate(records: list[dict[str, Any]]) -> Aggregate:
    metrics: dict[str, Any] = chair_metrics([_chair_of(r) for r in records])
    metrics["by_lang"] = {
        lang: chair_metrics([_chair_of(r) for r in group])
        for lang, group in _by_lang(records).items()
    }
    categories = {
        "CHAIR_s by language": {k: v["chair_s"] for k, v in metrics["by_lang"].items()},
        "CHAIR_i by language": {k: v["chair_i"] for k, v in metrics["by_lang"].items()},
    }
    return Aggregate(metrics, {r["id"]: r["score"] for r in records}, categories)


@register_task("chair")
def chair() -> Task:
    return Task(
        name="chair",
        description="CHAIR_i / CHAIR_s of detailed descriptions (objects: the world's shapes)",
        build=_detailed_build,
        extract=lambda raw, sample: sorted(
            set(_chair_of({"raw": raw, "truth": sample.truth, "meta": sample.meta}).hallucinated)
        ),
        # 1 for a caption without hallucinated objects: the mean is 1 - CHAIR_s.
        score=lambda answer, sample: float(not answer),
        aggregate=_chair_aggregate,
        primary_metric="chair_s",
        max_new_tokens=DETAILED_MAX_NEW_TOKENS,
        prompt_template=" | ".join(DETAILED_PROMPTS.values()),
        protocol={"prompts": DETAILED_PROMPTS, "max_new_tokens": DETAILED_MAX_NEW_TOKENS},
    )


def _claims_of(record: dict[str, Any]) -> ClaimScore:
    return score_description(
        record["raw"], Scene.from_dict(record["truth"]), record["meta"]["lang"]
    )


def _faith_aggregate(records: list[dict[str, Any]]) -> Aggregate:
    metrics: dict[str, Any] = claim_metrics([_claims_of(r) for r in records])
    metrics["by_lang"] = {
        lang: claim_metrics([_claims_of(r) for r in group])
        for lang, group in _by_lang(records).items()
    }
    categories = {
        "claim precision by language": {k: v["precision"] for k, v in metrics["by_lang"].items()},
        "fact recall by language": {k: v["recall"] for k, v in metrics["by_lang"].items()},
    }
    return Aggregate(metrics, {r["id"]: r["score"] for r in records}, categories)


def _faith_extract(raw: str, sample: Sample) -> dict[str, Any]:
    scored = _claims_of({"raw": raw, "truth": sample.truth, "meta": sample.meta})
    unfaithful = [list(c) for c in scored.claims if c not in scored.faithful]
    return {"claims": len(scored.claims), "unfaithful": unfaithful, "recall": scored.recall}


@register_task("faith")
def faith() -> Task:
    return Task(
        name="faith",
        description="exact claim precision / fact recall of detailed descriptions vs the scene graph",
        build=_detailed_build,
        extract=_faith_extract,
        # Per description: the share of its claims that are true (1.0 if it claims nothing).
        score=lambda answer, sample: (
            1.0 - len(answer["unfaithful"]) / answer["claims"] if answer["claims"] else 1.0
        ),
        aggregate=_faith_aggregate,
        primary_metric="f1",
        max_new_tokens=DETAILED_MAX_NEW_TOKENS,
        prompt_template=" | ".join(DETAILED_PROMPTS.values()),
        protocol={"prompts": DETAILED_PROMPTS, "max_new_tokens": DETAILED_MAX_NEW_TOKENS},
    )
