"""world_vqa asked of particular worlds or read along particular splits:

sort_of_clevr: a world generated in sort-of-clevr mode, accuracy on relational and
non-relational questions (Santoro et al. 2017) and per subtype.
cogent: the in-distribution world (CoGenT condition A) and the compositional hold-out
(condition B), accuracy on each and the gap A - B. `--data` is a run directory (its
world/test and world/cogent-b), a folder of world splits, or "DIR_A,DIR_B".
paraphrase: every question, with accuracy on phrasings held out of training
("heldout": true in questions.jsonl) beside accuracy on the seen phrasings.

Each asks, extracts and scores exactly as world_vqa does; only samples and metrics differ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocelli.errors import DataError
from ocelli.eval.tasks.base import Aggregate, Sample, Task, accuracy_aggregate, register_task
from ocelli.eval.tasks.world_closed import world_vqa, world_vqa_samples
from ocelli.world.loading import load_meta

COGENT_CONDITIONS = ("A", "B")
# Which split of a condition stands for it when a folder holds several (a run directory
# holds train, val and test in condition A).
SPLIT_PREFERENCE = ("test", "cogent-b", "val", "train")


def _variant(
    name: str,
    description: str,
    build: Callable[[Path], list[Sample]],
    aggregate: Callable[[list[dict[str, Any]]], Aggregate],
    primary_metric: str,
) -> Task:
    return dataclasses.replace(
        world_vqa(),
        name=name,
        description=description,
        build=build,
        aggregate=aggregate,
        primary_metric=primary_metric,
    )


def _mean(records: list[dict[str, Any]]) -> float:
    return sum(r["score"] for r in records) / len(records) if records else 0.0


def _grouped(
    records: list[dict[str, Any]], key: str, values: dict[str, Any], keys: tuple[str, ...]
) -> Aggregate:
    """Accuracy overall, by each of `keys`, and `accuracy_<label>` for each meta[key]
    value in `values` (label -> value)."""
    result = accuracy_aggregate(keys)(records)
    for label, value in values.items():
        result.metrics[f"accuracy_{label}"] = _mean(
            [r for r in records if r["meta"].get(key) == value]
        )
    return result


# --- sort_of_clevr ----------------------------------------------------------------------


def _sort_of_clevr_build(data_dir: Path) -> list[Sample]:
    mode = load_meta(data_dir).get("config", {}).get("mode")
    if mode != "sort-of-clevr":
        raise DataError(
            f"{data_dir} is a {mode!r} world; sort_of_clevr needs one generated with "
            "`ocelli world generate --mode sort-of-clevr`"
        )
    return world_vqa_samples(data_dir)


def _sort_of_clevr_aggregate(records: list[dict[str, Any]]) -> Aggregate:
    return _grouped(
        records,
        "type",
        {"relational": "relational", "non_relational": "non-relational"},
        ("type", "subtype", "lang"),
    )


@register_task("sort_of_clevr")
def sort_of_clevr() -> Task:
    return _variant(
        "sort_of_clevr",
        "Sort-of-CLEVR: relational and non-relational accuracy (a sort-of-clevr world)",
        _sort_of_clevr_build,
        _sort_of_clevr_aggregate,
        "accuracy_relational",
    )


# --- cogent -----------------------------------------------------------------------------


def cogent_dirs(data: Path) -> dict[str, Path]:
    """{"A": world split, "B": world split} from "DIR_A,DIR_B", a run directory or a
    folder of world splits, each condition read from the split's meta.json."""
    text = str(data)
    if "," in text:
        found = [Path(part.strip()) for part in text.split(",") if part.strip()]
    else:
        root = data / "world" if (data / "world").is_dir() else data
        found = sorted(p.parent for p in root.glob("*/meta.json")) or [root]
    by_condition: dict[str, list[Path]] = {c: [] for c in COGENT_CONDITIONS}
    for folder in found:
        meta = load_meta(folder)
        condition = meta.get("config", {}).get("cogent")
        if condition in by_condition:
            by_condition[condition].append(folder)
    chosen = {}
    for condition, folders in by_condition.items():
        if not folders:
            raise DataError(
                f"no CoGenT condition {condition} world in {data}; pass a run directory, a "
                "folder of world splits, or DIR_A,DIR_B (worlds made with --set cogent=A / B)"
            )
        chosen[condition] = min(folders, key=_split_rank)
    return chosen


def _split_rank(folder: Path) -> tuple[int, str]:
    split = load_meta(folder).get("split")
    rank = SPLIT_PREFERENCE.index(split) if split in SPLIT_PREFERENCE else len(SPLIT_PREFERENCE)
    return rank, str(folder)


def _cogent_build(data: Path) -> list[Sample]:
    samples = []
    for condition, folder in cogent_dirs(data).items():
        for sample in world_vqa_samples(folder):
            sample.id = f"{condition}:{sample.id}"
            sample.meta["condition"] = condition
            samples.append(sample)
    return samples


def _cogent_aggregate(records: list[dict[str, Any]]) -> Aggregate:
    result = _grouped(records, "condition", {"a": "A", "b": "B"}, ("condition", "type", "lang"))
    result.metrics["gap"] = result.metrics["accuracy_a"] - result.metrics["accuracy_b"]
    return result


@register_task("cogent")
def cogent() -> Task:
    return _variant(
        "cogent",
        "CoGenT: world_vqa on condition A (seen colour-shape pairs) and B (held out), gap A-B",
        _cogent_build,
        _cogent_aggregate,
        "accuracy_b",
    )


# --- paraphrase -------------------------------------------------------------------------


def _paraphrase_build(data_dir: Path) -> list[Sample]:
    samples = world_vqa_samples(data_dir)
    for sample in samples:
        sample.meta["phrasing"] = "heldout" if sample.meta.get("heldout") else "seen"
    if not any(s.meta["phrasing"] == "heldout" for s in samples):
        raise DataError(
            f'{data_dir}/questions.jsonl has no held-out phrasings ("heldout": true); '
            "generate the split with held-out templates (val and test splits have them)"
        )
    return samples


def _paraphrase_aggregate(records: list[dict[str, Any]]) -> Aggregate:
    result = _grouped(
        records, "phrasing", {"heldout": "heldout", "seen": "seen"}, ("phrasing", "type", "lang")
    )
    result.metrics["gap"] = result.metrics["accuracy_seen"] - result.metrics["accuracy_heldout"]
    for phrasing in ("heldout", "seen"):
        subset = [r for r in records if r["meta"]["phrasing"] == phrasing]
        by_type = accuracy_aggregate(("type",))(subset).categories.get("accuracy by type", {})
        result.metrics[f"by_type_{phrasing}"] = by_type
    return result


@register_task("paraphrase")
def paraphrase() -> Task:
    return _variant(
        "paraphrase",
        "world_vqa on phrasings held out of training, beside the seen phrasings",
        _paraphrase_build,
        _paraphrase_aggregate,
        "accuracy_heldout",
    )
