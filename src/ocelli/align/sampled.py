"""Preference pairs from the model's own answers, judged exactly against the scene.

As in Silkie / VLFeedback (AI feedback), but the judge is the world's scene graph: the
model samples several detailed descriptions of each image, each is scored with the
exact claim scorer (F1 of claim precision and fact recall), and the best is paired with
the worst when they differ by at least `min_gap`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocelli.align.pairs import PreferencePair
from ocelli.align.preference_data import span_pair
from ocelli.errors import ConfigError
from ocelli.eval.metrics.claims import score_description
from ocelli.world.loading import load_conversations, load_scenes


def description_score(text: str, scene: Any) -> float:
    """F1 of claim precision and fact recall: an empty answer says nothing false but
    also nothing true, so it must not win."""
    score = score_description(text, scene)
    total = score.precision + score.recall
    return 2 * score.precision * score.recall / total if total else 0.0


def sampled_pairs(
    pipeline: Any,
    world_dir: str | Path,
    num_samples: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 96,
    min_gap: float = 0.1,
    limit: int | None = None,
    seed: int = 0,
) -> list[PreferencePair]:
    """Best-vs-worst pairs of `pipeline`'s sampled descriptions of the world's images."""
    if num_samples < 2:
        raise ConfigError(f"num_samples must be at least 2 to form a pair, got {num_samples}")
    root = Path(world_dir).resolve()
    scenes = {scene.id: scene for scene in load_scenes(root)}
    records = [r for r in load_conversations(root, "describe.json") if r.get("lang") == "en"]
    pairs = []
    for index, record in enumerate(records[:limit]):
        scene = scenes[record["id"].rsplit("_", 1)[0]]
        prompt = record["conversations"][0]["value"].removeprefix("<image>\n")
        image = str(root / record["image"])
        answers = [
            pipeline.chat(
                image,
                prompt,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                seed=seed * 1_000_003 + index * num_samples + sample,
            )
            for sample in range(num_samples)
        ]
        scored = sorted(
            ((description_score(text, scene), text) for text in dict.fromkeys(answers)),
            key=lambda item: -item[0],
        )
        (best, chosen), (worst, rejected) = scored[0], scored[-1]
        if best - worst < min_gap or chosen == rejected:
            continue
        pairs.append(
            span_pair(
                record["id"],
                image,
                prompt,
                chosen,
                rejected,
                kind="sampled",
                source="model",
                image_id=scene.id,
                detail=f"claim F1 {best:.3f} vs {worst:.3f} of {num_samples} samples",
            )
        )
    return pairs
