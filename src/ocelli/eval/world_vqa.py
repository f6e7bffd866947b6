"""Exact-match VQA on the world's question files, per question type and language.

Every question in the world has one canonical short answer, so a generated answer is
scored exactly after a light normalisation (case, surrounding space and punctuation).
Reasoning questions answer with a rationale ("Yes. There are 3 circles and 1 square.");
they are scored on their leading verdict, and their full text is kept for the report.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ocelli.errors import DataError

_STRIP = " \t\n.,!?;:。，！？；：\"'“”"


def normalize_answer(text: str) -> str:
    """Lower-case, first line, surrounding space and punctuation removed."""
    first_line = text.strip().split("\n", 1)[0]
    return first_line.strip(_STRIP).lower()


def verdict(text: str) -> str:
    """The leading word or clause of an answer (before the first full stop)."""
    for stop in (".", "。", ",", "，"):
        text = text.split(stop, 1)[0]
    return normalize_answer(text)


def is_correct(prediction: str, answer: str, question_type: str) -> bool:
    if question_type == "reasoning":
        return verdict(prediction) == verdict(answer)
    return normalize_answer(prediction) == normalize_answer(answer)


@dataclass
class VQAResult:
    metrics: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)


def load_questions(data_dir: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    path = Path(data_dir) / "questions.jsonl"
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1 question, got {limit}")
    if not path.is_file():
        raise DataError(f"{path} not found; generate the data with `ocelli world generate`")
    questions = []
    for line_no, line in enumerate(path.open(encoding="utf-8"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
        missing = {"image", "question", "answer", "type", "lang"} - set(row)
        if missing:
            raise DataError(f"{path}:{line_no}: missing field(s) {', '.join(sorted(missing))}")
        questions.append(row)
        if limit is not None and len(questions) >= limit:
            break
    return questions


def evaluate_world_vqa(
    pipeline: Any,
    data_dir: str | Path,
    limit: int | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 24,
    progress: bool = True,
    description: str = "evaluating",
) -> VQAResult:
    """Greedy answers to every question of a world split, scored exactly."""
    data_dir = Path(data_dir)
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    questions = load_questions(data_dir, limit)
    start = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task(description, total=len(questions))
        records = answer_questions(
            pipeline,
            data_dir,
            questions,
            batch_size,
            max_new_tokens,
            on_batch=lambda done: bar.advance(task, done),
        )
    metrics = summarize(records)
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    return VQAResult(metrics, records)


_RECORD_FIELDS = ("id", "image", "lang", "type", "subtype", "question", "answer", "heldout")


def answer_questions(
    pipeline: Any,
    data_dir: Path,
    questions: list[dict[str, Any]],
    batch_size: int = 32,
    max_new_tokens: int = 24,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """One scored record per question, answered greedily `batch_size` at a time; shared by
    the full evaluation and the validation that runs during training (ocelli.train.validation).
    `on_batch(n)` is told how many questions each batch answered."""
    records = []
    for begin in range(0, len(questions), batch_size):
        chunk = questions[begin : begin + batch_size]
        answers = pipeline.chat_batch(
            [[data_dir / q["image"]] for q in chunk],
            [q["question"] for q in chunk],
            max_new_tokens=max_new_tokens,
        )
        for question, prediction in zip(chunk, answers, strict=True):
            records.append(
                {
                    **{k: question.get(k) for k in _RECORD_FIELDS},
                    "prediction": prediction,
                    "correct": is_correct(prediction, question["answer"], question["type"]),
                }
            )
        if on_batch is not None:
            on_batch(len(chunk))
    return records


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall accuracy and accuracy by type, language, type x language and subtype."""
    groups: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        ok = record["correct"]
        groups["by_type"][record["type"]].append(ok)
        groups["by_lang"][record["lang"]].append(ok)
        groups["by_type_lang"][f"{record['type']}/{record['lang']}"].append(ok)
        if record.get("subtype"):
            groups["by_subtype"][f"{record['type']}/{record['subtype']}"].append(ok)

    def mean(values: list[bool]) -> float:
        return round(sum(values) / len(values), 4) if values else 0.0

    metrics: dict[str, Any] = {
        "accuracy": mean([r["correct"] for r in records]),
        "num_questions": len(records),
    }
    for name, by_key in groups.items():
        metrics[name] = {key: mean(values) for key, values in sorted(by_key.items())}
    return metrics


def progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def blind_baseline(train_dir: str | Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """What a model that never looks at the image scores: for every question, the most
    common training answer of its type, subtype and language. A model's accuracy means
    something only above this line."""
    from collections import Counter

    counts: dict[tuple, Counter] = defaultdict(Counter)
    for question in load_questions(train_dir):
        key = (question["type"], question.get("subtype"), question["lang"])
        counts[key][question["answer"]] += 1
    scored = []
    for record in records:
        key = (record["type"], record.get("subtype"), record["lang"])
        guess = counts[key].most_common(1)[0][0] if counts[key] else ""
        scored.append(
            {
                **record,
                "prediction": guess,
                "correct": is_correct(guess, record["answer"], record["type"]),
            }
        )
    return summarize(scored)
