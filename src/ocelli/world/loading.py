"""Reading a generated world back: scenes, questions, captions, conversations.

Every reader checks what it reads and reports a problem with the file and line (or
record) it is in, so a damaged dataset fails loudly before training or evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocelli.errors import DataError
from ocelli.world.scenes import Scene

if TYPE_CHECKING:
    import datasets

QUESTION_KEYS = (
    "id",
    "image_id",
    "image",
    "lang",
    "type",
    "subtype",
    "template",
    "heldout",
    "question",
    "answer",
)
CAPTION_KEYS = ("id", "image", "lang", "short", "detailed")
RECORD_KEYS = ("id", "image", "conversations")
HF_KINDS = ("questions", "conversations", "captions", "pretrain")


def load_scenes(data_dir: str | Path) -> list[Scene]:
    """The scene graph of every image, in file order."""
    path = _file(data_dir, "scenes.jsonl")
    return [Scene.from_dict(row, where) for where, row in _jsonl_rows(path)]


def load_questions(data_dir: str | Path) -> list[dict[str, Any]]:
    """Single-turn question items (see docs/world.md for the fields)."""
    path = _file(data_dir, "questions.jsonl")
    return [_check_keys(row, QUESTION_KEYS, where) for where, row in _jsonl_rows(path)]


def load_captions(data_dir: str | Path) -> list[dict[str, Any]]:
    path = _file(data_dir, "captions.jsonl")
    return [_check_keys(row, CAPTION_KEYS, where) for where, row in _jsonl_rows(path)]


def load_conversations(
    data_dir: str | Path, name: str = "conversations.json"
) -> list[dict[str, Any]]:
    """LLaVA-format records (`name` may also be "pretrain.json"), checked turn by turn."""
    path = _file(data_dir, name)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); regenerate the dataset"
        ) from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    for index, record in enumerate(records):
        _check_record(record, f"{path} record {index}")
    return records


def load_meta(data_dir: str | Path) -> dict[str, Any]:
    path = _file(data_dir, "meta.json")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object")
    return meta


def as_hf_dataset(data_dir: str | Path, kind: str = "questions") -> datasets.Dataset:
    """A `datasets.Dataset` of questions, conversations, captions or pretrain records.

    Rows keep their relative "image" and gain "image_path", the absolute path of the
    image file (images are not decoded).
    """
    import datasets

    loaders = {
        "questions": load_questions,
        "captions": load_captions,
        "conversations": load_conversations,
        "pretrain": lambda d: load_conversations(d, "pretrain.json"),
    }
    if kind not in loaders:
        raise DataError(f"unknown dataset kind {kind!r}; choose from {', '.join(HF_KINDS)}")
    root = Path(data_dir).resolve()
    rows = [{**row, "image_path": str(root / row["image"])} for row in loaders[kind](root)]
    return datasets.Dataset.from_list(rows)


def _file(data_dir: str | Path, name: str) -> Path:
    path = Path(data_dir) / name
    if not path.is_file():
        raise DataError(
            f"{path}: file not found; is {data_dir} a world dataset? Create one with "
            "ocelli.world.generate_dataset (the CLI's world generate command)"
        )
    return path


def _jsonl_rows(path: Path):
    """(where, row) for every non-empty line; `where` is "file:line"."""
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{where}: not valid JSON ({exc.msg}); regenerate the "
                    "dataset or remove the line"
                ) from None
            yield where, row


def _check_keys(row: Any, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in keys if k not in row]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")
    return row


def _check_record(record: Any, where: str) -> None:
    _check_keys(record, RECORD_KEYS, where)
    turns = record["conversations"]
    if not isinstance(turns, list) or len(turns) < 2 or len(turns) % 2:
        raise DataError(f"{where}: 'conversations' must alternate human and gpt turns")
    for number, turn in enumerate(turns):
        expected = "human" if number % 2 == 0 else "gpt"
        if not isinstance(turn, dict) or turn.get("from") != expected:
            raise DataError(f"{where}, turn {number}: expected a {expected!r} turn")
        if not isinstance(turn.get("value"), str):
            raise DataError(f"{where}, turn {number}: 'value' must be a string")
    if not turns[0]["value"].startswith("<image>\n"):
        raise DataError(f"{where}: the first human turn must start with '<image>\\n'")
