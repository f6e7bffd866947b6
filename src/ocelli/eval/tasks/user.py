"""Tasks on a user's own data, without code: a LLaVA-format file, or a task file (YAML or
JSON) that names one, or names Hugging Face `datasets` data, and says how to prompt and
score.

    name: shapes_vqa                 # required
    data: shapes.json                # LLaVA-format .json/.jsonl, relative to this file
    dataset: shapes_hf               # or: datasets data (ocelli.eval.tasks.hf_data), with
    split: test                      #     optional split and `columns:` mapping
    image_root: images               # optional; default: the data's folder
    prompt: "{question} Answer with one word."   # optional; {question} is required in it
    answer: exact                    # exact | relaxed | yes_no | vqa | judge
    judge_prompt: ...                # optional, answer: judge (ocelli.eval.judge)
    max_new_tokens: 16               # optional
    description: ...                 # optional

Every human turn with the gpt turn after it becomes one question (earlier turns are not
sent as history). `yes_no` reads answers and truths with POPE's parser. `vqa` scoring
takes the reference answers from a record's "answers" list (or the `answers` column)
when it has one (VQAv2 style), else the gpt turn. `judge` has an LLM judge rate each
answer against the reference (`ocelli eval --judge openai:URL`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ocelli.data.chat_template import IMAGE_TOKEN
from ocelli.data.formats import load_conversations, read_records
from ocelli.errors import ConfigError, DataError
from ocelli.eval.judge import DEFAULT_TEMPLATE, check_template
from ocelli.eval.metrics import pope_parse, vqa_accuracy
from ocelli.eval.tasks import hf_data
from ocelli.eval.tasks.base import (
    Sample,
    Task,
    accuracy_aggregate,
    judge_aggregate,
    yes_no_aggregate,
)
from ocelli.eval.world_vqa import normalize_answer

ANSWER_KINDS = ("exact", "relaxed", "yes_no", "vqa", "judge")
TASK_KEYS = (
    "name",
    "data",
    "dataset",
    "split",
    "columns",
    "image_root",
    "prompt",
    "answer",
    "judge_prompt",
    "max_new_tokens",
    "description",
)


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
    "judge": (lambda raw, s: raw.strip(), lambda a, s: None),  # rated by the judge
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
    if "data" in spec and "dataset" in spec:
        raise ConfigError(f"task file {where}: give only one of 'data' and 'dataset'")
    if "data" not in spec and "dataset" not in spec:
        raise ConfigError(
            f"task file {where}: 'data' is required (a LLaVA-format file), or 'dataset' "
            "(a datasets save_to_disk folder, or a parquet/json/jsonl/csv file)"
        )
    for key in ("name", "data" if "data" in spec else "dataset"):
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise ConfigError(f"task file {where}: '{key}' is required and must be a string")
    columns = spec.get("columns", {})
    if not isinstance(columns, dict) or not all(
        role in hf_data.COLUMN_ROLES and (name is None or isinstance(name, str))
        for role, name in columns.items()
    ):
        raise ConfigError(
            f"task file {where}: columns must map some of {', '.join(hf_data.COLUMN_ROLES)} "
            "to column names"
        )
    if "data" in spec and ("columns" in spec or "split" in spec):
        raise ConfigError(f"task file {where}: 'columns' and 'split' go with 'dataset', not 'data'")
    if "judge_prompt" in spec:
        if spec.get("answer") != "judge":
            raise ConfigError(f"task file {where}: 'judge_prompt' needs answer: judge")
        check_template(spec["judge_prompt"], f"task file {where}")
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
    data = base / spec.get("data", spec.get("dataset"))
    root = base / spec["image_root"] if spec.get("image_root") else None
    extract, score = SCORERS[kind]
    protocol: dict[str, Any] = {"data": str(data), "answer": kind}
    if "dataset" in spec:
        columns = {**hf_data.DEFAULT_COLUMNS, **spec.get("columns", {})}
        protocol.update(split=spec.get("split"), columns=columns)

        def build(_data_dir: Path) -> list[Sample]:
            return _build_dataset(data, spec.get("split"), columns, root, template, kind)
    else:

        def build(_data_dir: Path) -> list[Sample]:
            return _build(data, root, template, kind)

    aggregates = {"yes_no": yes_no_aggregate, "judge": judge_aggregate(("type", "lang"))}
    primary = {"yes_no": "f1", "judge": "judge_score"}
    return Task(
        name=spec["name"],
        description=spec.get("description", f"{data.name}, {kind} match"),
        build=build,
        extract=extract,
        score=score,
        aggregate=aggregates.get(kind, accuracy_aggregate(("type", "lang"))),
        primary_metric=primary.get(kind, "accuracy"),
        max_new_tokens=spec.get("max_new_tokens", 32),
        prompt_template=template,
        protocol=protocol,
        source=str(where),
        judge_template=spec.get("judge_prompt", DEFAULT_TEMPLATE) if kind == "judge" else None,
    )


def _build_dataset(
    data: Path,
    split: str | None,
    columns: dict[str, str | None],
    root: Path | None,
    template: str,
    kind: str,
) -> list[Sample]:
    image_root = root or (data if data.is_dir() else data.parent)
    samples = []
    for index, row in enumerate(hf_data.rows(data, split, columns)):
        where = f"{data} row {index}"
        image = hf_data.image_file(row.get("image"), image_root, where)
        question, answer = row.get("question"), row.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise DataError(
                f"{where}: the question ({columns['question']}) must be a non-empty string"
            )
        meta: dict[str, Any] = {}
        if kind == "vqa" and row.get("answers") is not None:
            meta["answers"] = _answers({"answers": row["answers"]}, "", where)
        elif not isinstance(answer, str):
            raise DataError(f"{where}: the answer ({columns['answer']}) must be a string")
        elif kind == "vqa":
            meta["answers"] = [answer]
        samples.append(
            Sample(
                id=str(row["id"]) if row.get("id") is not None else str(index),
                images=[image] if image else [],
                prompt=template.format(question=question.replace(IMAGE_TOKEN, "").strip()),
                truth=pope_parse(answer) if kind == "yes_no" else answer or meta["answers"][0],
                meta=meta,
            )
        )
    if not samples:
        raise DataError(f"{data}: the dataset has no rows")
    return samples


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
