"""The function behind `ocelli eval` (its arguments are parsed in ocelli.cli)."""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

from ocelli.errors import ConfigError


def eval_command(args: argparse.Namespace, console: Any) -> int:
    if args.list:
        return list_tasks(console)
    if args.compare and args.compare[0] == "export-task":
        return export_command(args.compare, args, console)
    if args.compare:
        return compare_command(args.compare, console)
    if args.model is None:
        raise ConfigError("--model is required: a model directory or openai:http://host:port/v1")
    if args.retries < 0:
        raise ConfigError(f"--retries must be 0 or more, got {args.retries}")
    from ocelli.eval.harness import evaluate
    from ocelli.eval.results import markdown_table

    options = dict(
        data_dir=args.data,
        limit=args.limit,
        batch_size=args.batch_size,
        retries=args.retries,
        api_model=args.api_model,
        api_key=args.api_key or os.environ.get("OPENAI_API_KEY"),
        timeout=args.timeout,
        scoring=args.scoring,
    )
    if args.out is None:  # nothing kept: metrics printed, samples discarded
        with tempfile.TemporaryDirectory(prefix="ocelli-eval-") as out:
            results = evaluate(args.model, args.tasks, out, **options)
    else:
        results = evaluate(args.model, args.tasks, args.out, **options)
        console.print(f"results, samples and report.html in {args.out}")
    console.print(markdown_table(results), markup=False, soft_wrap=True)
    failed = sum(task["num_failed"] for task in results["tasks"].values())
    if failed:
        console.print(
            f"{failed} request(s) failed and were not scored; see results.json", markup=False
        )
    return 0


def list_tasks(console: Any) -> int:
    from ocelli.eval.tasks import TASKS

    for name in TASKS.names():
        task = TASKS.get(name)()
        console.print(f"{name:18} {task.description}", markup=False, soft_wrap=True)
    console.print(
        "or a task file: YAML/JSON task definition or LLaVA-format data (docs/evaluation.md)"
    )
    return 0


def compare_command(words: list[str], console: Any) -> int:
    if words[0] != "compare" or len(words) != 3:
        raise ConfigError(
            f"unexpected argument(s) {' '.join(words)!r}; to compare runs: ocelli eval compare RUN_A RUN_B"
        )
    from ocelli.eval.compare import compare_runs, comparison_markdown

    rows = compare_runs(words[1], words[2])
    console.print(comparison_markdown(rows, words[1], words[2]), markup=False, soft_wrap=True)
    return 0


def export_command(words: list[str], args: argparse.Namespace, console: Any) -> int:
    if len(words) != 2 or args.out is None:
        raise ConfigError("usage: ocelli eval export-task TASK --data DIR --out OUTDIR")
    from ocelli.eval.export import export_task

    summary = export_task(words[1], args.data, args.out)
    console.print(
        f"{summary['num_samples']} samples of {words[1]} in {args.out}: "
        f"{', '.join(summary['files'])}",
        markup=False,
        soft_wrap=True,
    )
    return 0
