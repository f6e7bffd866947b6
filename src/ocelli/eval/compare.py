"""`ocelli eval compare RUN_A RUN_B`: the two runs side by side, with a paired bootstrap
confidence interval of each task's difference, so a user can tell a real difference from
the luck of the sample.

Units (questions, images, circular groups) are paired by id; only units scored in both
runs count. The interval is of the mean unit score, which is the primary metric for
accuracy-like tasks; for corpus metrics (CIDEr-D, F1, MME score) it is of the per-unit
score listed beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ocelli.errors import DataError
from ocelli.eval.metrics import paired_bootstrap
from ocelli.eval.results import primary_value


def load_results(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise DataError(
            f"{path} not found; is {run_dir} the --out directory of an `ocelli eval` run?"
        )
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc.msg}); rerun the evaluation") from None
    if not isinstance(results, dict) or not isinstance(results.get("tasks"), dict):
        raise DataError(f"{path} is not an ocelli evaluation result (no 'tasks')")
    return results


def compare_runs(
    run_a: str | Path, run_b: str | Path, num_resamples: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per task present in both runs."""
    a, b = load_results(run_a), load_results(run_b)
    common = [name for name in a["tasks"] if name in b["tasks"]]
    if not common:
        raise DataError(f"{run_a} and {run_b} share no task; nothing to compare")
    rows = []
    for name in common:
        task_a, task_b = a["tasks"][name], b["tasks"][name]
        units = sorted(
            u
            for u in set(task_a["unit_scores"]) & set(task_b["unit_scores"])
            if task_a["unit_scores"][u] is not None and task_b["unit_scores"][u] is not None
        )
        row: dict[str, Any] = {
            "task": name,
            "metric": task_a["primary_metric"],
            "a": primary_value(task_a),
            "b": primary_value(task_b),
        }
        if units:
            row.update(
                paired_bootstrap(
                    [task_a["unit_scores"][u] for u in units],
                    [task_b["unit_scores"][u] for u in units],
                    num_resamples=num_resamples,
                    seed=seed,
                )
            )
        rows.append(row)
    return rows


def comparison_markdown(rows: list[dict[str, Any]], run_a: str, run_b: str) -> str:
    lines = [
        f"A = {run_a}, B = {run_b}; paired bootstrap over units scored in both (seeded)",
        "",
        "| task | metric | A | B | unit mean A | unit mean B | B - A | 95% CI | units |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "diff" in row:
            ci = f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
            paired = f"{row['mean_a']:.4f} | {row['mean_b']:.4f} | {row['diff']:+.4f} | {ci} | {row['num_units']}"
        else:
            paired = "- | - | - | - | 0"
        lines.append(
            f"| {row['task']} | {row['metric']} | {_fmt(row['a'])} | {_fmt(row['b'])} | {paired} |"
        )
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
