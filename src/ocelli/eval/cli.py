"""The function behind `ocelli eval` (its arguments are parsed in ocelli.cli)."""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

from ocelli.errors import ConfigError


def add_eval_parser(sub: Any, positive_int: Any, positive_float: Any) -> None:
    """`ocelli eval`'s arguments (the subcommand's parser is made here)."""
    evaluate = sub.add_parser(
        "eval",
        help="evaluate a model on tasks; `eval --list`, `eval compare RUN_A RUN_B`, "
        "`eval export-task TASK --data DIR --out OUTDIR`",
        description="ocelli eval --model DIR|openai:URL --tasks t1,t2 [--data DIR] --out OUTDIR; "
        "ocelli eval --list; ocelli eval compare RUN_A RUN_B; "
        "ocelli eval export-task TASK --data DIR --out OUTDIR (datasets + lmms-eval task)",
    )
    evaluate.add_argument("compare", nargs="*", metavar="compare RUN_A RUN_B | export-task TASK")
    evaluate.add_argument(
        "--model", default=None, help="model directory or openai:http://host:port/v1"
    )
    evaluate.add_argument(
        "--tasks", default="world_vqa", help="task names or task files, comma-separated"
    )
    evaluate.add_argument("--data", default=None, help="a world split (ocelli world generate)")
    evaluate.add_argument("--limit", type=positive_int, default=None, help="samples per task")
    evaluate.add_argument("--batch-size", type=positive_int, default=64)
    evaluate.add_argument("--out", default=None, help="run directory (rerun into it to resume)")
    evaluate.add_argument("--list", action="store_true", help="print the registered tasks")
    evaluate.add_argument("--retries", type=int, default=2, help="retries of a failed request")
    evaluate.add_argument("--api-model", default="default", help="model name sent to the server")
    evaluate.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY)")
    evaluate.add_argument(
        "--timeout", type=positive_float, default=60.0, help="seconds per request"
    )
    evaluate.add_argument(
        "--scoring",
        choices=("generate", "loglik", "both"),
        default="generate",
        help="closed-set tasks: generated answers, log-likelihood ranking of the candidate "
        "answers (local models), or both",
    )
    judge = evaluate.add_argument_group("LLM judge (tasks with answer: judge)")
    judge.add_argument("--judge", default=None, help="judge endpoint, openai:http://host:port/v1")
    judge.add_argument("--judge-model", default="default", help="model name sent to the judge")
    judge.add_argument(
        "--judge-api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the judge's API key (default: OPENAI_API_KEY)",
    )
    judge.add_argument(
        "--judge-timeout", type=positive_float, default=60.0, help="seconds per judge request"
    )
    judge.add_argument("--judge-retries", type=int, default=2, help="retries of a failed verdict")


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
        judge=args.judge,
        judge_model=args.judge_model,
        judge_api_key_env=args.judge_api_key_env,
        judge_timeout=args.judge_timeout,
        judge_retries=args.judge_retries,
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
    unjudged = sum(
        task.get("num_unparseable_verdicts", 0) + task.get("num_judge_failed", 0)
        for task in results["tasks"].values()
    )
    if unjudged:
        console.print(
            f"{unjudged} answer(s) got no usable verdict from the judge and were not scored; "
            "see results.json (a rerun into --out asks the failed ones again)",
            markup=False,
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
