"""`ocelli eval` as one function: tasks -> samples -> answers -> metrics -> reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocelli.errors import ConfigError
from ocelli.eval.backends import make_backend
from ocelli.eval.judge import Judge
from ocelli.eval.report import write_report
from ocelli.eval.results import build_results, score_runs, write_results
from ocelli.eval.runner import prepare, run_tasks
from ocelli.eval.scoring import with_scoring
from ocelli.eval.tasks import Task, resolve_tasks


def evaluate(
    model: str | Any,
    tasks: str | list[Task],
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    retries: int = 2,
    api_model: str = "default",
    api_key: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
    scoring: str = "generate",
    judge: str | Judge | None = None,
    judge_model: str = "default",
    judge_api_key_env: str | None = "OPENAI_API_KEY",
    judge_timeout: float = 60.0,
    judge_retries: int = 2,
) -> dict[str, Any]:
    """Evaluate `model` (a model directory, openai:URL, or a backend object) on `tasks`
    (comma-separated names and task files, or Task objects); write samples/, results.json,
    results.md and report.html into `out_dir` and return the results.

    `scoring` is generate, loglik or both (ocelli.eval.scoring): closed-set tasks scored
    by generation, by log-likelihood ranking of their candidate answers, or both.
    `judge` (openai:http://host:port/v1, or a Judge) rates the answers of tasks whose
    metric is `judge` (ocelli.eval.judge), as model `judge_model`, with the API key in
    the environment variable `judge_api_key_env`.
    Rerunning into the same `out_dir` only asks what is not yet answered."""
    task_list = with_scoring(resolve_tasks(tasks) if isinstance(tasks, str) else tasks, scoring)
    judged = [task.name for task in task_list if task.judge_template is not None]
    if isinstance(judge, str):
        judge = Judge(judge, judge_model, judge_api_key_env, judge_timeout, judge_retries)
    if judged and judge is None:
        raise ConfigError(
            f"task(s) {', '.join(judged)} are scored by an LLM judge; pass "
            "--judge openai:http://host:port/v1 (and --judge-model NAME)"
        )
    runs = prepare(task_list, data_dir, limit)  # bad data fails before the model loads
    backend = make_backend(model, api_model, api_key, timeout) if isinstance(model, str) else model
    outcome = run_tasks(backend, runs, out_dir, batch_size, retries, progress, judge)
    aggregates = score_runs(runs, outcome)
    settings = {
        "generation": backend.generation_settings(),
        "max_new_tokens": {run.task.name: run.task.max_new_tokens for run in runs},
        "batch_size": batch_size,
        "scoring": scoring,
        "retries": retries,
        "limit": limit,
        "data": str(data_dir) if data_dir is not None else None,
        "seeds": {run.task.name: run.task.protocol.get("seed") for run in runs},
        "judge": judge.describe() if judged and judge is not None else None,
    }
    results = build_results(runs, outcome, aggregates, backend.identity(), settings)
    write_results(out_dir, results)
    write_report(
        Path(out_dir) / "report.html", results, {k: v["records"] for k, v in outcome.items()}
    )
    return results
