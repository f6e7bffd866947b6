"""The evaluation loop: ask every sample of every task, store each answer as it comes,
skip what a previous run into the same directory finished, retry failures, then score.

Failed requests (server errors, timeouts, unreadable images) are retried `retries` times;
what still fails is recorded with its error, counted per task and left out of the
metrics, never scored as a wrong answer. Metrics are computed from the stored records
in the tasks' sample order, so a resumed run scores exactly like an uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocelli.errors import ConfigError, DataError
from ocelli.eval.backends import Request
from ocelli.eval.judge import MAX_RATING, judge_prompt
from ocelli.eval.store import RunStore
from ocelli.eval.tasks import Sample, Task
from ocelli.eval.world_vqa import progress_bar


@dataclass
class TaskRun:
    task: Task
    samples: list[Sample]


def prepare(tasks: list[Task], data_dir: str | Path | None, limit: int | None) -> list[TaskRun]:
    """Build every task's samples (before any model is loaded, so bad data fails fast)."""
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1 sample, got {limit}")
    runs = []
    for task in tasks:
        if data_dir is None and task.source == "built-in":
            raise DataError(
                f"task {task.name!r} needs --data, a world split (ocelli world generate)"
            )
        samples = task.build(Path(data_dir) if data_dir is not None else Path("."))
        if not samples:
            raise DataError(f"task {task.name!r} found nothing to ask in {data_dir}")
        runs.append(TaskRun(task, samples[:limit] if limit else samples))
    return runs


def run_tasks(
    backend: Any,
    runs: list[TaskRun],
    out_dir: str | Path,
    batch_size: int = 64,
    retries: int = 2,
    progress: bool = True,
    judge: Any = None,
) -> dict[str, dict[str, Any]]:
    """Ask what is not yet answered, then return {task: {"records", "failed", "seconds"}}:
    records are the successful ones in sample order. A judged task's answers are then
    rated by `judge` (ocelli.eval.judge); its "records" are the rated ones, and its
    answers without a verdict are listed under "unparseable" and "judge_failed"."""
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    if retries < 0:
        raise DataError(f"retries must be 0 or more, got {retries}")
    ranked = [run.task.name for run in runs if run.task.scoring == "loglik"]
    if ranked and not getattr(backend, "supports_loglik", False):
        raise ConfigError(
            f"{backend.identity().get('model')} cannot rank answers by log-likelihood (an "
            f"OpenAI-compatible server returns no scores of given answers), needed by "
            f"{', '.join(ranked)}; use --scoring generate or a local model directory"
        )
    store = RunStore(out_dir)
    store.claim(backend.identity(), {run.task.name: run.task.describe() for run in runs})
    outcome = {}
    for run in runs:
        began = time.perf_counter()
        done = store.read(run.task.name)
        pending = [s for s in run.samples if done.get(s.id, {}).get("status") != "ok"]
        # Questions about the same images in one batch: a local model reads each image once
        # per batch (ocelli.eval.shared_prefix). Metrics keep the tasks' sample order.
        pending.sort(key=lambda sample: sample.images)
        with progress_bar(progress) as bar:
            handle = bar.add_task(f"{run.task.name}", total=len(run.samples))
            bar.advance(handle, len(run.samples) - len(pending))
            for begin in range(0, len(pending), batch_size):
                chunk = pending[begin : begin + batch_size]
                records = _ask(backend, run.task, chunk, retries)
                store.append(run.task.name, records)
                bar.advance(handle, len(chunk))
        if run.task.judge_template is not None:
            _judge_pending(judge, run.task, store, batch_size)
        latest = store.read(run.task.name)
        ordered = [latest[s.id] for s in run.samples if s.id in latest]
        answered = [r for r in ordered if r["status"] == "ok"]
        entry: dict[str, Any] = {
            "records": answered,
            "failed": [r for r in ordered if r["status"] != "ok"],
            "seconds": round(time.perf_counter() - began, 2),
        }
        if run.task.judge_template is not None:
            for key, status in (("records", "ok"), ("unparseable", "unparseable")):
                entry[key] = [r for r in answered if r["judge"]["status"] == status]
            entry["judge_failed"] = [r for r in answered if r["judge"]["status"] == "failed"]
        outcome[run.task.name] = entry
    return outcome


def _judge_pending(judge: Any, task: Task, store: RunStore, batch_size: int) -> None:
    """Rate the answers without a verdict yet (or whose judge request failed before)."""
    if judge is None:
        raise ConfigError(
            f"task {task.name!r} is scored by an LLM judge; pass --judge openai:http://host:port/v1"
        )
    todo = [
        record
        for record in store.read(task.name).values()
        if record["status"] == "ok"
        and (record.get("judge") or {}).get("status") in (None, "failed")
    ]
    for begin in range(0, len(todo), batch_size):
        chunk = todo[begin : begin + batch_size]
        verdicts = judge.judge(
            [judge_prompt(task.judge_template, r["prompt"], r["truth"], r["answer"]) for r in chunk]
        )
        for record, verdict in zip(chunk, verdicts, strict=True):
            record["judge"] = verdict.to_record()
            record["score"] = verdict.rating / MAX_RATING if verdict.status == "ok" else None
        store.append(task.name, chunk)


def _ask(backend: Any, task: Task, samples: list[Sample], retries: int) -> list[dict[str, Any]]:
    answers: dict[str, str] = {}
    errors: dict[str, str] = {}
    attempts = dict.fromkeys((s.id for s in samples), 0)
    todo = []
    for sample in samples:
        missing = [p for p in sample.images if not Path(p).is_file()]
        if missing:  # no retry can help: counted as failed at once
            errors[sample.id] = f"image file {missing[0]} not found"
        else:
            todo.append(sample)
    rankings: dict[str, list[float]] = {}
    for _ in range(retries + 1):
        if not todo:
            break
        results = _call(backend, task, todo)
        retry = []
        for sample, result in zip(todo, results, strict=True):
            attempts[sample.id] += 1
            if isinstance(result, Exception):
                errors[sample.id] = str(result)
                retry.append(sample)
            else:
                if task.scoring == "loglik":
                    result, rankings[sample.id] = result
                answers[sample.id] = result
                errors.pop(sample.id, None)
        todo = retry
    records = [
        _record(task, s, answers.get(s.id), errors.get(s.id), attempts[s.id]) for s in samples
    ]
    for record in records:
        if record["id"] in rankings:
            record["candidate_scores"] = rankings[record["id"]]
    return records


def _call(backend: Any, task: Task, samples: list[Sample]) -> list[Any]:
    """Generated answers, or (likeliest candidate, scores) for log-likelihood ranking."""
    if task.scoring != "loglik":
        return backend.generate([Request(s.images, s.prompt, task.max_new_tokens) for s in samples])
    requests = [
        Request(s.images, s.prompt, task.max_new_tokens, task.candidates(s)) for s in samples
    ]
    return backend.rank(requests)


def _record(
    task: Task, sample: Sample, raw: str | None, error: str | None, attempts: int
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "task": task.name,
        "id": sample.id,
        "prompt": sample.prompt,
        "images": sample.images,
        "raw": raw,
        "truth": sample.truth,
        "meta": sample.meta,
        "attempts": attempts,
    }
    if raw is None:
        return {**record, "status": "failed", "error": error, "answer": None, "score": None}
    answer = task.extract(raw, sample)
    return {**record, "status": "ok", "answer": answer, "score": task.score(answer, sample)}
