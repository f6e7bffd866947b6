"""LLaVA-format conversation data: loading and validation.

A record is `{"id", "image" (a path, a list of paths, or absent for text-only),
"conversations": [{"from": "human"|"gpt"|"system", "value": str}, ...]}`; the file is
a JSON list (`.json`) or one record per line (`.jsonl`). Every `<image>` placeholder
needs an image and every image a placeholder; records are checked on load so a bad
line is reported with its file and position, before any training starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocelli.data.chat_template import IMAGE_TOKEN as IMAGE_PLACEHOLDER
from ocelli.data.chat_template import llava_to_messages
from ocelli.errors import DataError


@dataclass
class ConversationRecord:
    """One validated training example: chat messages plus the image paths they refer to."""

    id: str
    messages: list[dict[str, str]]
    images: list[Path] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read raw records from a `.json` list or a `.jsonl` file, naming the bad line on error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; give a LLaVA-format .json or .jsonl file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        records = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
        return records
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON at line {exc.lineno} ({exc.msg})") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    return records


def load_conversations(
    path: str | Path, image_root: str | Path | None = None, check_images: bool = True
) -> list[ConversationRecord]:
    """Load and validate LLaVA-format conversations; image paths resolve against image_root
    (default: the file's directory)."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    return [
        parse_record(raw, root, where=f"{path} record {index}", check_images=check_images)
        for index, raw in enumerate(read_records(path))
    ]


def parse_record(
    raw: Any, image_root: Path, where: str, check_images: bool = True
) -> ConversationRecord:
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected an object, got {type(raw).__name__}")
    turns = raw.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: needs a non-empty 'conversations' list")
    try:
        messages = llava_to_messages(turns)
    except DataError as exc:
        raise DataError(f"{where}, {exc}") from None
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: has no assistant ('gpt') turn to learn from")
    images = _image_paths(raw.get("image"), image_root, where)
    num_placeholders = sum(m["content"].count(IMAGE_PLACEHOLDER) for m in messages)
    if num_placeholders != len(images):
        raise DataError(
            f"{where}: {num_placeholders} '<image>' placeholder(s) but {len(images)} image(s); "
            "put one '<image>' in the text per image"
        )
    if check_images:
        for image in images:
            if not image.is_file():
                raise DataError(f"{where}: image file {image} not found")
    meta = {k: v for k, v in raw.items() if k not in ("conversations", "image")}
    return ConversationRecord(str(raw.get("id", where)), messages, images, meta)


def _image_paths(value: Any, root: Path, where: str) -> list[Path]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v for v in values):
        raise DataError(f"{where}: 'image' must be a path or a list of paths")
    return [Path(v) if Path(v).is_absolute() else root / v for v in values]
