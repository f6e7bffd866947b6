"""Preference pairs from a world's ground truth (`ocelli align data`).

Kinds of pairs, all from the English records of a generated world:
  object, attribute, count, relation  the detailed description (describe.json) against
                                      the same text with one controlled corruption
  answer                              a question's right answer against a wrong one
  negative                            LRV-style yes/no questions about absent objects or
                                      wrong sizes, and their positive twins

Chosen is always the world's faithful text, so every pair is right by construction;
the builder also checks each corrupted description with the exact claim scorer. The
same world and seed always give the same file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ocelli.align.corruptions import (
    DESCRIPTION_KINDS,
    Vocabulary,
    corrupt_answer,
    corrupt_description,
)
from ocelli.align.negatives import negative_instructions
from ocelli.align.pairs import PreferencePair, write_pairs
from ocelli.errors import ConfigError, DataError
from ocelli.utils.io import atomic_write_json
from ocelli.world.loading import load_conversations, load_meta, load_questions, load_scenes
from ocelli.world.scenes import Scene
from ocelli.world.vocab import COLORS, NO, SHAPES, SIZES, YES

KINDS = (*DESCRIPTION_KINDS, "answer", "negative")


def check_kinds(kinds: Sequence[str] | None) -> list[str]:
    """The kinds asked for (all by default), each a known one."""
    if kinds is None:
        return list(KINDS)
    chosen = [kind.strip() for kind in kinds if kind.strip()]
    unknown = [kind for kind in chosen if kind not in KINDS]
    if unknown or not chosen:
        raise ConfigError(
            f"unknown preference kind(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(KINDS)}"
        )
    return list(dict.fromkeys(chosen))


def world_vocabulary(world_dir: Path) -> Vocabulary:
    """What the world can draw, so an added object is one the world could have drawn."""
    config = load_meta(world_dir).get("config", {})
    return Vocabulary(
        tuple(config.get("colors") or COLORS),
        tuple(config.get("shapes") or SHAPES),
        tuple(config.get("sizes") or SIZES),
    )


def build_preference_pairs(
    world_dir: str | Path,
    kinds: Sequence[str] | None = None,
    seed: int = 0,
    yes_ratio: float = 0.5,
) -> tuple[list[PreferencePair], dict[str, Any]]:
    """Every pair of the asked kinds for a world directory, and a summary."""
    kinds = check_kinds(kinds)
    if not 0.0 <= yes_ratio <= 1.0:
        raise ConfigError(f"yes_ratio must lie in [0, 1], got {yes_ratio}")
    root = Path(world_dir)
    if not root.is_dir():
        raise DataError(
            f"world directory {root} not found; create one with `ocelli world generate`"
        )
    root = root.resolve()
    scenes = {scene.id: scene for scene in load_scenes(root)}
    vocab = world_vocabulary(root)
    pairs: list[PreferencePair] = []
    if any(kind in DESCRIPTION_KINDS for kind in kinds):
        pairs += _description_pairs(root, scenes, vocab, kinds, seed)
    if "answer" in kinds:
        pairs += _answer_pairs(root, scenes, vocab, seed)
    if "negative" in kinds:
        pairs += _negative_pairs(root, scenes, vocab, seed, yes_ratio)
    if not pairs:
        raise DataError(
            f"{root}: no English records to build {', '.join(kinds)} pairs from; generate the "
            "world with --lang en"
        )
    return pairs, summarize(pairs)


def _rng(seed: int, index: int, kind: str) -> np.random.Generator:
    # One stream per (seed, record, kind): adding a kind does not change the others.
    return np.random.default_rng([seed, index, KINDS.index(kind)])


def _description_pairs(
    root: Path, scenes: dict[str, Scene], vocab: Vocabulary, kinds: list[str], seed: int
) -> list[PreferencePair]:
    pairs = []
    records = load_conversations(root, "describe.json")
    for index, record in enumerate(records):
        if record.get("lang", "en") != "en":
            continue
        scene = scenes[record["id"].rsplit("_", 1)[0]]
        prompt = record["conversations"][0]["value"].removeprefix("<image>\n")
        text = record["conversations"][1]["value"]
        for kind in (k for k in kinds if k in DESCRIPTION_KINDS):
            corruption = corrupt_description(kind, text, scene, vocab, _rng(seed, index, kind))
            if corruption is None:
                continue
            pairs.append(
                PreferencePair(
                    id=f"{record['id']}_{kind}",
                    image=str(root / record["image"]),
                    prompt=prompt,
                    chosen=text,
                    rejected=corruption.text,
                    kind=kind,
                    source="describe",
                    image_id=scene.id,
                    detail=corruption.detail,
                    chosen_spans=corruption.chosen_spans,
                    rejected_spans=corruption.rejected_spans,
                )
            )
    return pairs


def _answer_pairs(
    root: Path, scenes: dict[str, Scene], vocab: Vocabulary, seed: int
) -> list[PreferencePair]:
    pairs = []
    for index, question in enumerate(load_questions(root)):
        if question["lang"] != "en":
            continue
        corruption = corrupt_answer(question, vocab, _rng(seed, index, "answer"))
        if corruption is None:
            continue
        pairs.append(
            PreferencePair(
                id=f"{question['id']}_answer",
                image=str(root / question["image"]),
                prompt=question["question"],
                chosen=str(question["answer"]),
                rejected=corruption.text,
                kind="answer",
                source=f"questions/{question['type']}",
                image_id=question["image_id"],
                detail=corruption.detail,
                chosen_spans=corruption.chosen_spans,
                rejected_spans=corruption.rejected_spans,
            )
        )
    return pairs


def _negative_pairs(
    root: Path, scenes: dict[str, Scene], vocab: Vocabulary, seed: int, yes_ratio: float
) -> list[PreferencePair]:
    pairs = []
    for index, scene in enumerate(scenes.values()):
        rng = _rng(seed, index, "negative")
        for number, item in enumerate(negative_instructions(scene, vocab, rng, yes_ratio)):
            chosen_span, rejected_span = diff_spans(item.answer, item.wrong)
            pairs.append(
                PreferencePair(
                    id=f"{scene.id}_negative{number}",
                    image=str(root / scene.image),
                    prompt=item.question,
                    chosen=item.answer,
                    rejected=item.wrong,
                    kind="negative",
                    source="lrv/" + ("yes" if item.is_yes else "no"),
                    image_id=scene.id,
                    detail=item.detail,
                    chosen_spans=[chosen_span],
                    rejected_spans=[rejected_span],
                )
            )
    return pairs


def diff_spans(first: str, second: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """The differing middle of two texts: [start, end) in each, after their common
    prefix and before their common suffix."""
    prefix = 0
    while prefix < min(len(first), len(second)) and first[prefix] == second[prefix]:
        prefix += 1
    suffix = 0
    limit = min(len(first), len(second)) - prefix
    while suffix < limit and first[-1 - suffix] == second[-1 - suffix]:
        suffix += 1
    return (prefix, len(first) - suffix), (prefix, len(second) - suffix)


def span_pair(
    record_id: str, image: str, prompt: str, chosen: str, rejected: str, **fields: Any
) -> PreferencePair:
    """A pair of two free texts (e.g. model answers) with their differing middles marked
    as the changed spans; `fields` are the rest of PreferencePair's (kind, source, ...)."""
    chosen_span, rejected_span = diff_spans(chosen, rejected)
    return PreferencePair(
        id=f"{record_id}_{fields['kind']}",
        image=image,
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        chosen_spans=[chosen_span],
        rejected_spans=[rejected_span],
        **fields,
    )


def summarize(pairs: Sequence[PreferencePair]) -> dict[str, Any]:
    """Pairs per kind and, for the yes/no pairs, the share whose chosen answer is yes
    (a share far from 0.5 would teach the model a bias)."""
    summary: dict[str, Any] = {
        "num_pairs": len(pairs),
        "by_kind": dict(Counter(pair.kind for pair in pairs)),
    }
    for kind in ("answer", "negative"):
        verdicts = [_verdict(pair.chosen) for pair in pairs if pair.kind == kind]
        verdicts = [v for v in verdicts if v is not None]
        if verdicts:
            summary[f"{kind}_yes_ratio"] = sum(verdicts) / len(verdicts)
            summary[f"{kind}_yes_no_pairs"] = len(verdicts)
    return summary


def _verdict(answer: str) -> bool | None:
    first = answer.split(",", 1)[0].split(".", 1)[0].strip().lower()
    return True if first == YES["en"] else False if first == NO["en"] else None


def write_preference_data(
    world_dir: str | Path,
    out: str | Path,
    kinds: Sequence[str] | None = None,
    seed: int = 0,
    yes_ratio: float = 0.5,
    extra: Sequence[PreferencePair] = (),
) -> dict[str, Any]:
    """Build the pairs (plus `extra` ones, e.g. from `sampled_pairs`), write them as
    JSONL to `out` and the summary beside it (`<out>.summary.json`). Returns the summary."""
    # An empty list of kinds: only the `extra` pairs (e.g. `--kinds povid`).
    pairs = (
        []
        if kinds is not None and not kinds
        else build_preference_pairs(world_dir, kinds, seed, yes_ratio)[0]
    )
    pairs += list(extra)
    if not pairs:
        raise DataError(f"no preference pairs to write for {world_dir}; ask for more kinds")
    summary = summarize(pairs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_pairs(out, pairs)
    summary = {**summary, "world": str(Path(world_dir).resolve()), "seed": seed}
    atomic_write_json(out.with_name(out.name + ".summary.json"), summary)
    return summary


def instruction_records(pairs: Sequence[PreferencePair]) -> list[dict[str, Any]]:
    """The negative pairs' chosen answers as LLaVA-format records, for mixing into
    instruction tuning (LRV-augmented SFT)."""
    return [
        {
            "id": pair.id,
            "image": pair.image,
            "conversations": [
                {"from": "human", "value": f"<image>\n{pair.prompt}"},
                {"from": "gpt", "value": pair.chosen},
            ],
        }
        for pair in pairs
        if pair.kind == "negative"
    ]


def lrv_conversations(world_dir: str | Path, seed: int = 0, yes_ratio: float = 0.5) -> list[Any]:
    """A world's LRV negative instructions as conversation records (ocelli.data's
    ConversationRecord), ready to mix into instruction tuning."""
    from ocelli.data.formats import parse_record

    root = Path(world_dir).resolve()
    pairs, _ = build_preference_pairs(root, ["negative"], seed, yes_ratio)
    return [
        parse_record(raw, root, where=f"LRV instruction {raw['id']}")
        for raw in instruction_records(pairs)
    ]
