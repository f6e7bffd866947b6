"""An evaluation's output directory: what identifies the run, and the per-sample records.

Records are appended to samples/<task>.jsonl as each batch finishes, flushed and
fsynced, so a killed run loses at most the batch in flight. A last line cut short by the
kill is dropped on reading (and rewritten by the next append); a broken line anywhere
else means the file was damaged, which is an error naming the file and line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ocelli.errors import ConfigError, DataError
from ocelli.utils import atomic_write_json

RUN_FILE = "run.json"
# What must match for a rerun to continue an existing directory: same model, same tasks
# asked the same way. --limit and --batch-size may change (the results do not depend on them).
_IDENTITY_KEYS = ("model_config_hash", "weights_hash", "model", "api_model")


class RunStore:
    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.samples_dir = self.out_dir / "samples"

    def claim(self, identity: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> None:
        """Record the run's identity, or check that an existing run is the same model and
        the same task definitions; anything else is refused before a sample is asked."""
        path = self.out_dir / RUN_FILE
        if path.is_file():
            try:
                previous = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                raise ConfigError(
                    f"{path} is damaged; remove {self.out_dir} or choose another --out"
                ) from None
            self._check_same(previous, identity, tasks)
            merged = {**previous.get("tasks", {}), **tasks}
        elif self.out_dir.is_dir() and any(self.out_dir.iterdir()):
            raise ConfigError(
                f"{self.out_dir} is not empty and holds no evaluation run; choose another --out"
            )
        else:
            merged = tasks
        atomic_write_json(path, {"identity": identity, "tasks": merged})

    def _check_same(self, previous: dict, identity: dict, tasks: dict) -> None:
        old = previous.get("identity", {})
        for key in _IDENTITY_KEYS:
            if old.get(key) != identity.get(key):
                raise ConfigError(
                    f"{self.out_dir} holds a run of another model ({key} {old.get(key)!r}, now "
                    f"{identity.get(key)!r}); choose another --out to keep both"
                )
        for name, definition in tasks.items():
            before = previous.get("tasks", {}).get(name)
            if before is not None and before != definition:
                raise ConfigError(
                    f"{self.out_dir} holds task {name!r} with another definition (prompt, "
                    "tokens or scoring changed); choose another --out"
                )

    def path(self, task: str) -> Path:
        return self.samples_dir / f"{task}.jsonl"

    def read(self, task: str) -> dict[str, dict[str, Any]]:
        """The latest record of every sample id (a later success replaces a failure)."""
        path = self.path(task)
        if not path.is_file():
            return {}
        lines = path.read_text(encoding="utf-8").split("\n")
        records: dict[str, dict[str, Any]] = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):  # the last line, cut by a kill mid-write
                    self._drop_partial_tail(path)
                    break
                raise DataError(
                    f"{path}:{number}: damaged record; remove the line or the file"
                ) from None
            if not isinstance(record, dict) or "id" not in record or "status" not in record:
                raise DataError(
                    f"{path}:{number}: not a sample record; remove the line or the file"
                )
            records[str(record["id"])] = record
        return records

    @staticmethod
    def _drop_partial_tail(path: Path) -> None:
        data = path.read_bytes()
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)

    def append(self, task: str, records: list[dict[str, Any]]) -> None:
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        with self.path(task).open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
