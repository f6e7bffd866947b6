"""Questions from Hugging Face `datasets` data on disk, for task files with `dataset:`.

    dataset: vqa_set            # a folder written by Dataset(Dict).save_to_disk, or a
                                # .parquet / .json / .jsonl / .csv file
    split: test                 # which split of a DatasetDict (default: its only one)
    columns:                    # which column holds what (these are the defaults)
      image: image              # a datasets Image (PIL) column, or image file paths
      question: question
      answer: answer
      answers: null             # optional: a list of reference answers (answer: vqa)
      id: null                  # optional: a sample id column (default: the row number)

Only local data is read (datasets' own file builders, never the hub). Image paths are
relative to `image_root` (default: the folder holding the data). Images stored inside
the data (bytes) are written once to ocelli's image cache under their SHA-256, so a
sample names an image file like every other sample, and an image many rows share is
read once.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

from ocelli.errors import DataError

BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}
DEFAULT_COLUMNS = {"image": "image", "question": "question", "answer": "answer"}
COLUMN_ROLES = ("image", "question", "answer", "answers", "id")


def image_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("OCELLI_IMAGE_CACHE", Path(base) / "ocelli" / "images"))


def load_rows(path: Path, split: str | None) -> Any:
    """The dataset at `path` (a save_to_disk folder or a data file), one split of it."""
    import datasets

    if path.is_dir():
        try:
            data = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as exc:
            raise DataError(
                f"{path} is not a folder written by save_to_disk ({exc}); give such a folder "
                f"or a {', '.join(BUILDERS)} file"
            ) from None
    elif path.is_file():
        builder = BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DataError(
                f"{path}: cannot read {path.suffix or 'a file without extension'}; "
                f"use a save_to_disk folder or a {', '.join(BUILDERS)} file"
            )
        try:
            data = datasets.load_dataset(builder, data_files={"data": str(path)})
        except Exception as exc:  # the file builders raise many kinds for a bad file
            raise DataError(f"{path} could not be read as {builder}: {exc}") from None
        if split is None:
            split = "data"
    else:
        raise DataError(f"dataset {path} not found (a save_to_disk folder or a data file)")
    if isinstance(data, datasets.DatasetDict):
        names = list(data)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in data:
            raise DataError(
                f"{path} has the split(s) {', '.join(names)}; name one with `split:` in the task file"
            )
        data = data[split]
    return data


def check_columns(data: Any, columns: dict[str, str | None], where: Path) -> None:
    available = list(data.column_names)
    for role, column in columns.items():
        if column is not None and column not in available:
            raise DataError(
                f"{where}: no column {column!r} (the {role}); its columns are "
                f"{', '.join(available)}; map them with `columns:` in the task file"
            )


def rows(path: Path, split: str | None, columns: dict[str, str | None]) -> list[dict[str, Any]]:
    """Every row as {role: value}, images as stored (bytes not decoded into pixels)."""
    import datasets

    data = load_rows(path, split)
    check_columns(data, columns, path)
    image_column = columns.get("image")
    if image_column and isinstance(data.features[image_column], datasets.Image):
        data = data.cast_column(image_column, datasets.Image(decode=False))
    wanted = {role: column for role, column in columns.items() if column is not None}
    table = data.select_columns(sorted(set(wanted.values()))).to_dict()
    count = len(data)
    return [{role: table[column][i] for role, column in wanted.items()} for i in range(count)]


def image_file(value: Any, root: Path, where: str) -> str | None:
    """An image value (a path, or {"bytes", "path"} from an Image column) as a file path."""
    if value is None:
        return None
    if isinstance(value, dict):
        stored = value.get("path")
        if stored and (root / stored).is_file():
            return str((root / stored).resolve())
        if value.get("bytes"):
            return _cached(value["bytes"])
        raise DataError(f"{where}: the image has neither bytes nor an existing file ({stored})")
    if isinstance(value, str):
        path = root / value
        if not path.is_file():
            raise DataError(
                f"{where}: image file {path} not found; set image_root in the task file"
            )
        return str(path.resolve())
    raise DataError(f"{where}: the image column holds {type(value).__name__}, not an image or path")


def _cached(data: bytes) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        kind = (Image.open(io.BytesIO(data)).format or "png").lower()
    except UnidentifiedImageError:
        raise DataError("an image in the dataset is not in a format Pillow can read") from None
    folder = image_cache_dir()
    target = folder / f"{hashlib.sha256(data).hexdigest()}.{kind}"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(data)
        partial.replace(target)
    return str(target)
