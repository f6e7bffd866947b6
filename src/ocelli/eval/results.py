"""Scoring a finished run and writing results.json and results.md (atomically).

results.json holds, per task, the metrics, the task definition (prompt template, tokens,
scoring, protocol), the exact prompts asked, the failed samples, and the per-unit scores
that `ocelli eval compare` pairs; and for the run, the model's identity (config and
weights hashes), the generation settings, batch size, limit, data and provenance
(ocelli version, git commit).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ocelli.eval.runner import TaskRun
from ocelli.eval.tasks import Aggregate
from ocelli.utils import atomic_write_json, atomic_write_text, provenance

MAX_PROMPTS_LISTED = 200


def score_runs(runs: list[TaskRun], outcome: dict[str, dict[str, Any]]) -> dict[str, Aggregate]:
    return {run.task.name: run.task.aggregate(outcome[run.task.name]["records"]) for run in runs}


def build_results(
    runs: list[TaskRun],
    outcome: dict[str, dict[str, Any]],
    aggregates: dict[str, Aggregate],
    identity: dict[str, Any],
    settings: dict[str, Any],
) -> dict[str, Any]:
    tasks = {}
    for run in runs:
        name = run.task.name
        failed = outcome[name]["failed"]
        prompts = list(dict.fromkeys(s.prompt for s in run.samples))
        tasks[name] = {
            "definition": run.task.describe(),
            "metrics": aggregates[name].metrics,
            "primary_metric": run.task.primary_metric,
            "num_samples": len(run.samples),
            "num_scored": len(outcome[name]["records"]),
            "num_failed": len(failed),
            "failed": [{"id": r["id"], "error": r.get("error")} for r in failed[:50]],
            "seconds": outcome[name]["seconds"],
            "prompts": prompts[:MAX_PROMPTS_LISTED],
            "num_distinct_prompts": len(prompts),
            "prompts_sha256": hashlib.sha256(json.dumps(prompts).encode()).hexdigest(),
            "images": sorted({Path(p).name for s in run.samples for p in s.images}),
            "unit_scores": aggregates[name].unit_scores,
            "categories": aggregates[name].categories,
            "confusion": aggregates[name].confusion,
        }
        if run.task.judge_template is not None:
            tasks[name].update(_judge_counts(outcome[name]))
    return {"tasks": tasks, "run": {**identity, **settings}, "provenance": provenance()}


def _judge_counts(outcome: dict[str, Any]) -> dict[str, Any]:
    """Answers the judge gave no usable verdict on: counted apart, never scored."""
    unparseable, failed = outcome["unparseable"], outcome["judge_failed"]
    return {
        "num_unparseable_verdicts": len(unparseable),
        "num_judge_failed": len(failed),
        "unparseable_verdicts": [
            {"id": r["id"], "reply": (r["judge"]["reply"] or "")[:300]} for r in unparseable[:50]
        ],
        "judge_failed": [{"id": r["id"], "error": r["judge"]["error"]} for r in failed[:50]],
    }


def primary_value(task_result: dict[str, Any]) -> Any:
    return task_result["metrics"].get(task_result["primary_metric"])


def markdown_table(results: dict[str, Any]) -> str:
    lines = [
        f"# Evaluation of {results['run'].get('model')}",
        "",
        "| task | metric | value | scored | failed |",
        "|---|---|---|---|---|",
    ]
    for name, task in results["tasks"].items():
        value = primary_value(task)
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(
            f"| {name} | {task['primary_metric']} | {shown} | {task['num_scored']} | {task['num_failed']} |"
        )
    for name, task in results["tasks"].items():
        if task.get("num_unparseable_verdicts") or task.get("num_judge_failed"):
            lines.append(
                f"\n{name}: {task['num_unparseable_verdicts']} unparseable verdict(s) and "
                f"{task['num_judge_failed']} failed judge request(s), not scored"
            )
    lines += ["", "All metrics:", ""]
    for name, task in results["tasks"].items():
        scalars = {k: v for k, v in task["metrics"].items() if isinstance(v, (int, float))}
        lines.append(f"- **{name}**: " + ", ".join(f"{k} {_fmt(v)}" for k, v in scalars.items()))
    commit = results["provenance"].get("git_commit")
    lines += ["", f"ocelli {results['provenance']['ocelli_version']}, commit {commit}", ""]
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_results(out_dir: str | Path, results: dict[str, Any]) -> None:
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "results.md", markdown_table(results))
