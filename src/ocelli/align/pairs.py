"""Preference pairs on disk: TRL's vision preference format plus ocelli's metadata.

One JSON object per line, in the conversational form TRL's DPOTrainer reads for vision
models (so the same file trains with TRL or with ocelli's own loop):

    {"prompt":   [{"role": "user", "content": [{"type": "image"},
                                               {"type": "text", "text": "Is there a red star?"}]}],
     "chosen":   [{"role": "assistant", "content": [{"type": "text", "text": "No, ..."}]}],
     "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "Yes, ..."}]}],
     "images":   ["/abs/path/images/train_000003.png"],
     "id": "...", "kind": "negative", "source": "lrv", "image_id": "train_000003",
     "lang": "en", "detail": "...",
     "chosen_spans": [[0, 2]], "rejected_spans": [[0, 3]]}

`*_spans` are [start, end) character offsets into the chosen / rejected text: the
segments that differ (RLHF-V's corrected segments), which segment-weighted DPO weighs
more. Every row has the same keys and types, so `datasets.load_dataset("json")` infers
one schema for the whole file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocelli.errors import DataError, ImageError
from ocelli.utils.io import atomic_write_bytes

Span = tuple[int, int]
REQUIRED_KEYS = ("prompt", "chosen", "rejected", "images")


@dataclass
class PreferencePair:
    """One prompt about one image, a preferred and a dispreferred answer."""

    id: str
    image: str
    prompt: str
    chosen: str
    rejected: str
    kind: str
    source: str = "world"
    image_id: str = ""
    lang: str = "en"
    detail: str = ""
    chosen_spans: list[Span] = field(default_factory=list)
    rejected_spans: list[Span] = field(default_factory=list)

    def to_row(self) -> dict[str, Any]:
        """The JSONL row (TRL's conversational vision format + metadata)."""
        return {
            "prompt": [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": self.prompt}],
                }
            ],
            "chosen": [_assistant(self.chosen)],
            "rejected": [_assistant(self.rejected)],
            "images": [self.image],
            "id": self.id,
            "kind": self.kind,
            "source": self.source,
            "image_id": self.image_id,
            "lang": self.lang,
            "detail": self.detail,
            "chosen_spans": [list(span) for span in self.chosen_spans],
            "rejected_spans": [list(span) for span in self.rejected_spans],
        }

    def messages(self, response: str) -> list[dict[str, str]]:
        """The conversation in ocelli's chat form, ending with `response`."""
        return [
            {"role": "user", "content": f"<image>\n{self.prompt}"},
            {"role": "assistant", "content": response},
        ]


def _assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def write_pairs(path: str | Path, pairs: Iterable[PreferencePair]) -> int:
    """Write pairs as JSONL atomically (a crash leaves no half-written file)."""
    lines = [json.dumps(pair.to_row(), ensure_ascii=False) for pair in pairs]
    atomic_write_bytes(Path(path), ("\n".join(lines) + "\n").encode("utf-8") if lines else b"")
    return len(lines)


def load_pairs(path: str | Path, check_images: bool = True) -> list[PreferencePair]:
    """Read and check a preference file; a bad row fails with its file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"preference file {path} not found; write one with `ocelli align data`")
    pairs = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                pairs.append(_parse_row(line, f"{path}:{line_no}", check_images))
    if not pairs:
        raise DataError(f"preference file {path} holds no pairs")
    return pairs


def _parse_row(line: str, where: str, check_images: bool) -> PreferencePair:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in row]
    if missing:
        raise DataError(
            f"{where}: missing field(s) {', '.join(missing)}; each row needs "
            f"{', '.join(REQUIRED_KEYS)}"
        )
    images = row["images"]
    if not isinstance(images, list) or len(images) != 1 or not isinstance(images[0], str):
        raise DataError(f"{where}: 'images' must be a list of exactly one image path")
    if check_images and not Path(images[0]).is_file():
        raise ImageError(f"{where}: image {images[0]} does not exist; regenerate the pairs")
    chosen = _text_of(row["chosen"], where, "chosen")
    rejected = _text_of(row["rejected"], where, "rejected")
    if chosen == rejected:
        raise DataError(f"{where}: chosen and rejected are the same text, so nothing to prefer")
    return PreferencePair(
        id=str(row.get("id", where)),
        image=images[0],
        prompt=_text_of(row["prompt"], where, "prompt"),
        chosen=chosen,
        rejected=rejected,
        kind=str(row.get("kind", "")),
        source=str(row.get("source", "")),
        image_id=str(row.get("image_id", "")),
        lang=str(row.get("lang", "en")),
        detail=str(row.get("detail", "")),
        chosen_spans=_spans(row.get("chosen_spans", []), len(chosen), where),
        rejected_spans=_spans(row.get("rejected_spans", []), len(rejected), where),
    )


def _text_of(value: Any, where: str, key: str) -> str:
    """The text of a one-message conversation (or a plain string), checked non-empty."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        content = value[0].get("content")
        if isinstance(content, list):
            value = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        else:
            value = content
    if not isinstance(value, str):
        raise DataError(f"{where}: {key!r} must be one message whose content is text (or a string)")
    if not value.strip():
        raise DataError(f"{where}: {key!r} is empty; every pair needs a prompt and two answers")
    return value


def _spans(value: Any, length: int, where: str) -> list[Span]:
    try:
        spans = [(int(start), int(end)) for start, end in value]
    except (TypeError, ValueError):
        raise DataError(f"{where}: spans must be a list of [start, end] pairs") from None
    if any(not 0 <= start <= end <= length for start, end in spans):
        raise DataError(f"{where}: a span lies outside its text of {length} characters")
    return spans
