"""What a task is: where its samples come from, how they are asked, how an answer is read
and scored, and how scores add up. Tasks are registered by name in `TASKS`.

A task builds `Sample`s from a data directory. The runner asks the model each sample's
prompt, stores the raw output, `extract`s the answer, `score`s it, and, once every
sample is in, `aggregate`s the per-sample records into metrics. Everything a task does
to a prompt or an answer is in its definition, so results.json can record it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocelli.model.registry import Registry


@dataclass
class Sample:
    """One request: `images` are absolute paths; `truth` and `meta` are JSON values
    (`meta` holds what aggregation groups by: type, lang, subtask, question id...)."""

    id: str
    images: list[str]
    prompt: str
    truth: Any
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Aggregate:
    """A task's results: `metrics` for results.json and the tables, `unit_scores` (one
    number per scored unit: question, image, circular group) for paired comparisons,
    `categories` ({title: {category: value}}) for bar plots, `confusion` (tp, fp, tn, fn)
    for yes/no tasks."""

    metrics: dict[str, Any]
    unit_scores: dict[str, float]
    categories: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion: dict[str, int] | None = None


@dataclass
class Task:
    name: str
    description: str
    build: Callable[[Path], list[Sample]]
    extract: Callable[[str, Sample], Any]
    score: Callable[[Any, Sample], float | None]  # None: scored per unit in aggregate
    aggregate: Callable[[list[dict[str, Any]]], Aggregate]
    primary_metric: str
    max_new_tokens: int = 16
    prompt_template: str = "{question}"
    protocol: dict[str, Any] = field(default_factory=dict)
    source: str = "built-in"
    # Closed-set tasks: the answers a sample can have, for log-likelihood ranking (None
    # for a sample that has no closed set, such as a reasoning question).
    candidates: Callable[[Sample], list[str] | None] | None = None
    scoring: str = "generate"  # or "loglik": see ocelli.eval.scoring
    # Open-ended tasks rated by an LLM judge: the judge's prompt template (ocelli.eval.judge).
    judge_template: str | None = None

    def describe(self) -> dict[str, Any]:
        """What results.json records about the task (its code is named by the version
        and commit recorded beside it)."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "prompt_template": self.prompt_template,
            "max_new_tokens": self.max_new_tokens,
            "primary_metric": self.primary_metric,
            **({"protocol": self.protocol} if self.protocol else {}),
            **({"scoring": self.scoring} if self.scoring != "generate" else {}),
            **({"judge_template": self.judge_template} if self.judge_template else {}),
        }


TASKS: Registry[Callable[[], Task]] = Registry(
    "task", "Or pass the path of a task file (YAML or JSON, see docs/evaluation.md)."
)


def register_task(name: str) -> Callable:
    """Decorator for a function returning a fresh `Task` named `name`."""
    return TASKS.register(name)


def accuracy_aggregate(group_keys: tuple[str, ...] = ("type", "lang")) -> Callable:
    """Mean score overall and per value of each `meta` key (a bar plot each)."""

    def aggregate(records: list[dict[str, Any]]) -> Aggregate:
        categories: dict[str, dict[str, float]] = {}
        for key in group_keys:
            groups: dict[str, list[float]] = defaultdict(list)
            for record in records:
                if record["meta"].get(key) is not None:
                    groups[str(record["meta"][key])].append(record["score"])
            if groups:
                categories[f"accuracy by {key}"] = {
                    name: sum(v) / len(v) for name, v in sorted(groups.items())
                }
        scores = {record["id"]: record["score"] for record in records}
        metrics: dict[str, Any] = {
            "accuracy": sum(scores.values()) / len(scores) if scores else 0.0,
            "num_samples": len(scores),
        }
        for title, values in categories.items():
            metrics[title.replace("accuracy by ", "by_")] = values
        return Aggregate(metrics, scores, categories)

    return aggregate


def judge_aggregate(group_keys: tuple[str, ...] = ("type", "lang")) -> Callable:
    """Mean judge score (rating / 10) overall and per value of each `meta` key."""
    by_accuracy = accuracy_aggregate(group_keys)

    def aggregate(records: list[dict[str, Any]]) -> Aggregate:
        result = by_accuracy(records)
        score = result.metrics.pop("accuracy") if records else None  # None: nothing rated
        metrics = {"judge_score": score, "mean_rating": None if score is None else score * 10}
        for key, value in result.metrics.items():
            metrics[key] = value
        categories = {
            title.replace("accuracy by ", "judge score by "): values
            for title, values in result.categories.items()
        }
        return Aggregate(metrics, result.unit_scores, categories)

    return aggregate


def yes_no_aggregate(records: list[dict[str, Any]]) -> Aggregate:
    """Binary metrics ("yes" positive) over the extracted answers, with the confusion."""
    from ocelli.eval.metrics import binary_metrics

    metrics = binary_metrics([r["answer"] for r in records], [r["truth"] for r in records])
    confusion = {k: metrics[k] for k in ("tp", "fp", "tn", "fn")}
    return Aggregate(metrics, {r["id"]: r["score"] for r in records}, confusion=confusion)
