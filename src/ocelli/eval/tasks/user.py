"""Tasks on a user's own data, without code: a LLaVA-format file, or a task file (YAML or
JSON) that names one and says how to prompt and score.

    name: shapes_vqa                 # required
    data: shapes.json                # LLaVA-format .json/.jsonl, relative to this file
    image_root: images               # optional; default: the data file's folder
    prompt: "{question} Answer with one word."   # optional; {question} is required in it
    answer: exact                    # exact | relaxed | yes_no | vqa
    max_new_tokens: 16               # optional
    description: ...                 # optional

Every human turn with the gpt turn after it becomes one question (earlier turns are not
sent as history). `yes_no` reads answers and truths with POPE's parser. `vqa` scoring takes the reference answers from a record's "answers"
list when it has one (VQAv2 style), else the gpt turn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ocelli.data.chat_template import IMAGE_TOKEN
from ocelli.data.formats import load_conversations, read_records
from ocelli.errors import ConfigError, DataError
from ocelli.eval.metrics import pope_parse, vqa_accuracy
from ocelli.eval.tasks.base import Sample, Task, accuracy_aggregate, yes_no_aggregate
from ocelli.eval.world_vqa import normalize_answer

ANSWER_KINDS = ("exact", "relaxed", "yes_no", "vqa")
TASK_KEYS = ("name", "data", "image_root", "prompt", "answer", "max_new_tokens", "description")


def _relaxed_match(answer: str, truth: str) -> float:
    return float(f" {normalize_answer(truth)} " in f" {answer} ")


SCORERS = {
    "exact": (
        lambda raw, s: normalize_answer(raw),
        lambda a, s: float(a == normalize_answer(s.truth)),
    ),
    "relaxed": (lambda raw, s: normalize_answer(raw), lambda a, s: _relaxed_match(a, s.truth)),
    "yes_no": (lambda raw, s: pope_parse(raw), lambda a, s: float(a == s.truth)),
    "vqa": (lambda raw, s: raw, lambda a, s: vqa_accuracy(a, s.meta["answers"])),
}


def is_task_file(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml", ".json", ".jsonl")) or "/" in spec


def load_task_file(path: str | Path) -> Task:
    """A task from a task file (YAML, or JSON holding an object) or a LLaVA-format data
    file (JSON list or JSONL), which is scored by exact match under its file name."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"task file {path} not found; give a task name (ocelli eval --list) or a file"
        )
    if path.suffix == ".jsonl":
        return _data_task({"name": path.stem, "data": path.name}, path.parent, path)
    text = path.read_text(encoding="utf-8")
    try:
        spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"task file {path} is not valid {path.suffix[1:].upper()}: {exc}"
        ) from None
    if isinstance(spec, list) and path.suffix == ".json":  # LLaVA-format data itself
        return _data_task({"name": path.stem, "data": path.name}, path.parent, path)
    if not isinstance(spec, dict):
        raise ConfigError(
            f"task file {path} must hold a mapping of task fields ({', '.join(TASK_KEYS)})"
        )
    return _data_task(spec, path.parent, path)


def _check_spec(spec: dict[str, Any], where: Path) -> None:
    unknown = sorted(set(spec) - set(TASK_KEYS))
    if unknown:
        raise ConfigError(
            f"task file {where}: unknown key(s) {unknown}; allowed: {', '.join(TASK_KEYS)}"
        )
    for key in ("name", "data"):
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise ConfigError(f"task file {where}: '{key}' is required and must be a string")
    if spec.get("answer", "exact") not in ANSWER_KINDS:
        raise ConfigError(
            f"task file {where}: answer must be one of {', '.join(ANSWER_KINDS)}, got {spec['answer']!r}"
        )
    prompt = spec.get("prompt", "{question}")
    if not isinstance(prompt, str) or "{question}" not in prompt:
        raise ConfigError(f"task file {where}: prompt must be a string containing {{question}}")
    tokens = spec.get("max_new_tokens", 32)
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        raise ConfigError(
            f"task file {where}: max_new_tokens must be a positive integer, got {tokens!r}"
        )


def _data_task(spec: dict[str, Any], base: Path, where: Path) -> Task:
    _check_spec(spec, where)
    kind = spec.get("answer", "exact")
    template = spec.get("prompt", "{question}")
    data = base / spec["data"]
    root = base / spec["image_root"] if spec.get("image_root") else None
    extract, score = SCORERS[kind]
    return Task(
        name=spec["name"],
        description=spec.get("description", f"{data.name}, {kind} match"),
        build=lambda _data_dir: _build(data, root, template, kind),
        extract=extract,
        score=score,
        aggregate=yes_no_aggregate if kind == "yes_no" else accuracy_aggregate(("type", "lang")),
        primary_metric="f1" if kind == "yes_no" else "accuracy",
        max_new_tokens=spec.get("max_new_tokens", 32),
        prompt_template=template,
        protocol={"data": str(data), "answer": kind},
        source=str(where),
    )


def _build(data: Path, root: Path | None, template: str, kind: str) -> list[Sample]:
    records = load_conversations(data, root, check_images=False)
    raw_records = read_records(data)
    samples = []
    for index, (record, raw) in enumerate(zip(records, raw_records, strict=True)):
        turns = [m for m in record.messages if m["role"] != "system"]
        for number in range(0, len(turns) - 1, 2):
            question, answer = turns[number], turns[number + 1]
            if question["role"] != "user" or answer["role"] != "assistant":
                continue
            meta = {k: v for k, v in record.meta.items() if isinstance(v, (str, int, float, bool))}
            if kind == "vqa":
                meta["answers"] = _answers(raw, answer["content"], f"{data} record {index}")
            samples.append(
                Sample(
                    id=f"{record.id}_{number // 2}",
                    images=[str(p) for p in record.images],
                    prompt=template.format(
                        question=question["content"].replace(IMAGE_TOKEN, "").strip()
                    ),
                    truth=pope_parse(answer["content"]) if kind == "yes_no" else answer["content"],
                    meta=meta,
                )
            )
    if not samples:
        raise DataError(f"{data}: no question-answer pairs found")
    return samples


def _answers(raw: dict[str, Any], fallback: str, where: str) -> list[str]:
    answers = raw.get("answers", [fallback])
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise DataError(f"{where}: 'answers' must be a non-empty list of strings")
    return answers
