"""The rest of `ocelli eval`'s tasks in the quickstart: the recipe's `eval.suite` (MME,
MMBench CircularEval, captions, claim faithfulness, paraphrase robustness by default)
on the test split, each cut to its `eval.suite_limits` so the whole suite adds about a
minute to the demo.

Closed-set tasks are scored by log-likelihood ranking of their candidate answers (one
forward pass per candidate, no decoding), open-ended ones by generation. Each task runs
on its own into eval/[subdir/]suite/<task>/, so a task the run's world cannot pose (a
world without held-out phrasings, a machine without Java for the caption metrics) is
reported as skipped instead of costing the rest of the report."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ocelli.errors import ConfigError, OcelliError
from ocelli.train.recipe import EvalSection, Recipe

# The figures a task shows in the report and the printed summary; the full metrics are
# in its results.json. A task not listed shows its primary metric.
HEADLINE_METRICS = {
    "mme": ("acc", "acc_plus", "total_score"),
    "mmbench_circular": ("circular_accuracy", "vanilla_accuracy"),
    "caption": ("cider", "bleu4", "rouge_l", "meteor"),
    "faith": ("precision", "recall", "f1"),
    "paraphrase": ("accuracy_seen", "accuracy_heldout", "gap"),
}
# Sample meta keys that tie samples into one scored unit (an MME image's yes/no pair, a
# CircularEval question's rotations): a limit never splits one.
UNIT_KEYS = ("question_id", "image_id")
# What a task's entry records beside its figures.
ABOUT_KEYS = ("scoring", "num_samples", "seconds")


def check_suite(section: EvalSection) -> None:
    """Fail on a task name or limit the quickstart cannot use, before anything trains."""
    from ocelli.eval.tasks import TASKS

    unknown = [name for name in section.suite if name not in TASKS]
    if unknown:
        raise ConfigError(
            f"eval.suite: unknown task(s) {', '.join(map(repr, unknown))}; registered tasks: "
            f"{', '.join(TASKS.names())} (see `ocelli eval --list`)"
        )
    if len(set(section.suite)) != len(section.suite):
        raise ConfigError(f"eval.suite names a task twice: {section.suite}")
    stray = sorted(set(section.suite_limits) - set(section.suite))
    if stray:
        raise ConfigError(
            f"eval.suite_limits: {', '.join(stray)} not in eval.suite ({section.suite}); "
            "add the task to eval.suite or drop its limit"
        )
    for name, limit in section.suite_limits.items():
        if not isinstance(limit, int) or limit < 1:
            raise ConfigError(
                f"eval.suite_limits.{name} must be a whole number >= 1, got {limit!r}"
            )


def whole_units(samples: list[Any], limit: int | None) -> list[Any]:
    """The first `limit` samples, less a trailing unit the limit would cut in two."""
    if limit is None or len(samples) <= limit:
        return samples
    kept = samples[:limit]
    unit = _unit_of(samples[limit])
    if unit is None:
        return kept
    trimmed = [s for s in kept if _unit_of(s) != unit] if _unit_of(kept[-1]) == unit else kept
    return trimmed or kept


def _unit_of(sample: Any) -> str | None:
    return next((str(sample.meta[k]) for k in UNIT_KEYS if sample.meta.get(k) is not None), None)


def evaluate_suite(
    recipe: Recipe, run_dir: Path, progress: bool = True, stage: str = "instruct", subdir: str = ""
) -> dict[str, Any]:
    """{task: {"scoring", "num_samples", "seconds", headline metrics...}}, or
    {task: {"skipped": why}} for a task this run cannot pose or score."""
    from ocelli.eval.backends import LocalBackend
    from ocelli.eval.harness import evaluate
    from ocelli.eval.scoring import loglik_variant
    from ocelli.eval.tasks import TASKS

    data_dir = run_dir / "world" / "test"
    if not recipe.eval.suite or not (data_dir / "scenes.jsonl").is_file():
        return {}
    model_dir = run_dir / stage / "final"
    backend = LocalBackend(model_dir, device=_device(recipe))
    figures: dict[str, Any] = {}
    for name in recipe.eval.suite:
        task = TASKS.get(name)()
        if task.candidates is not None:
            task = loglik_variant(task)
        limit = recipe.eval.suite_limits.get(name, recipe.eval.limit)
        began = time.perf_counter()
        try:
            samples = whole_units(task.build(data_dir), limit)
            task = dataclasses.replace(task, build=lambda _dir, samples=samples: samples)
            results = evaluate(
                backend,
                [task],
                run_dir / "eval" / subdir / "suite" / name,
                data_dir=data_dir,
                batch_size=recipe.eval.batch_size,
                progress=progress,
            )
        except OcelliError as error:
            figures[name] = {"skipped": str(error)}
            continue
        result = results["tasks"][task.name]
        figures[name] = {
            "scoring": task.scoring,
            "num_samples": result["num_samples"],
            "seconds": round(time.perf_counter() - began, 1),
            **headline(name, result["metrics"], task.primary_metric),
        }
    return figures


def _device(recipe: Recipe) -> str:
    import torch

    if recipe.eval.device != "auto":
        return recipe.eval.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def headline(name: str, metrics: dict[str, Any], primary: str) -> dict[str, float]:
    """The task's headline figures, rounded. MME's acc and acc+ are the means over its
    subtasks (as percentages); its total score is their scores' sum (0-800)."""
    values = dict(metrics)
    if name == "mme" and metrics.get("by_subtask"):
        subtasks = list(metrics["by_subtask"].values())
        for key in ("acc", "acc_plus"):
            values[key] = sum(s[key] for s in subtasks) / len(subtasks)
    keys = HEADLINE_METRICS.get(name, (primary,))
    return {key: round(values[key], 4) for key in keys if isinstance(values.get(key), int | float)}


def suite_rows(sft: dict[str, Any], aligned: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task and figure: SFT, and aligned with the change when stage 3 ran."""
    rows = []
    for name, values in sft.items():
        if "skipped" in values:
            rows.append({"task": name, "measure": "skipped", "SFT": values["skipped"]})
            continue
        theirs = aligned.get(name, {})
        for key, value in values.items():
            if key in ABOUT_KEYS:
                continue
            row = {"task": name, "measure": key, "scoring": values["scoring"]}
            row["samples"] = values["num_samples"]
            row["SFT" if aligned else "value"] = value
            if key in theirs:
                row["aligned"] = theirs[key]
                row["change"] = round(theirs[key] - value, 4)
            rows.append(row)
    return rows


def suite_html(sft: dict[str, Any], aligned: dict[str, Any]) -> str:
    from ocelli.report import html_table

    if not sft:
        return ""
    rows = suite_rows(sft, aligned)
    columns = ["task", "measure", "scoring", "samples", "SFT" if aligned else "value"]
    if aligned:
        columns += ["aligned", "change"]
    places = ", ".join(
        f'<a href="eval/suite/{name}/report.html">{name}</a>'
        for name, values in sft.items()
        if "skipped" not in values
    )
    return (
        "<h2>Benchmark suite (test split)</h2>"
        "<p>Closed-set tasks scored by log-likelihood ranking of their candidate answers "
        "(loglik), open-ended ones by greedy generation; samples per task from "
        "eval.suite_limits. MME acc and acc+ are means over its subtasks (percent), its "
        "score the sum of the subtask scores.</p>"
        + html_table(rows, columns)
        + f"<p>Per-sample answers: {places}</p>"
    )


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """The suite's figures for the printed summary, one line per task and model."""
    lines = []
    models = [("SFT", metrics.get("suite", {})), ("aligned", metrics["aligned"].get("suite", {}))]
    for label, suite in models:
        for name, values in suite.items():
            if "skipped" in values:
                lines.append(f"{name} ({label}): skipped, {values['skipped']}")
                continue
            figures = ", ".join(
                f"{key} {value:.3f}" for key, value in values.items() if key not in ABOUT_KEYS
            )
            lines.append(f"{name} ({label}, {values['num_samples']} samples): {figures}")
    return lines


def suite_seconds(*suites: dict[str, Any]) -> float:
    """Wall time the suites took, metrics included."""
    return sum(values.get("seconds", 0.0) for suite in suites for values in suite.values())
