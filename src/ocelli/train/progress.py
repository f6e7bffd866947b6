"""What a training run reports while it runs, on the main process only.

- the console: a rich progress bar on a terminal; plain lines every `log_every` steps
  when stdout is not a terminal, so CI logs stay readable;
- `out_dir/metrics.jsonl`: one JSON object per logged step, appended as training goes;
  on resume the lines after the resumed step are dropped, so the file always reads as
  one consistent run;
- TensorBoard events in `out_dir/tensorboard/` when the tensorboard package is installed.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ocelli.utils.io import atomic_write_text

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file; a line cut short by a crash is skipped."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


class MetricsLog:
    """Appends records to metrics.jsonl (and TensorBoard); keeps steps <= `resume_step`."""

    def __init__(self, out_dir: Path, resume_step: int | None, tensorboard: bool = True) -> None:
        self.path = out_dir / METRICS_FILE
        kept = []
        if resume_step is not None and self.path.is_file():
            kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = self.path.open("a", encoding="utf-8")
        self._writer = (
            _tensorboard_writer(out_dir / "tensorboard", resume_step) if tensorboard else None
        )

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()  # a killed run keeps every line logged before it died
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self._writer.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def _tensorboard_writer(log_dir: Path, resume_step: int | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; metrics.jsonl always has everything
        return None
    # purge_step drops events a killed run wrote after the checkpoint it resumes from.
    return SummaryWriter(str(log_dir), purge_step=None if resume_step is None else resume_step + 1)


class ProgressDisplay:
    """A rich bar on a terminal, plain lines every `log_every` steps otherwise; or nothing."""

    def __init__(
        self,
        description: str,
        total_steps: int,
        start_step: int,
        log_every: int,
        enabled: bool = True,
        plain: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.description = description
        self.total_steps = total_steps
        self.start_step = start_step
        self.log_every = log_every
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.plain = (not self.stream.isatty()) if plain is None else plain
        self.smoothed_loss: float | None = None
        self.started = time.perf_counter()
        self._bar: Progress | None = None
        if enabled and not self.plain:
            self._bar = _rich_bar(Console(file=self.stream))
            self._task = self._bar.add_task(
                description,
                total=total_steps,
                completed=start_step,
                loss=float("nan"),
                lr=0.0,
                samples_per_s=0.0,
                tokens_per_s=0.0,
            )
            self._bar.start()

    def update(self, step: int, metrics: dict[str, Any]) -> None:
        """Called after every optimizer step with at least loss, lr and the throughputs."""
        if not self.enabled:
            return
        loss = float(metrics["loss"])
        # An exponential average: the raw per-step loss is too noisy to read on a bar.
        self.smoothed_loss = (
            loss if self.smoothed_loss is None else 0.9 * self.smoothed_loss + 0.1 * loss
        )
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=step,
                loss=self.smoothed_loss,
                lr=metrics["lr"],
                samples_per_s=metrics.get("samples_per_s", 0.0),
                tokens_per_s=metrics.get("tokens_per_s", 0.0),
            )
        elif step % self.log_every == 0 or step == self.total_steps:
            print(self._plain_line(step, metrics), file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _plain_line(self, step: int, metrics: dict[str, Any]) -> str:
        elapsed = time.perf_counter() - self.started
        done = step - self.start_step
        eta = elapsed / done * (self.total_steps - step) if done > 0 else 0.0
        parts = [
            f"[{self.description}] step {step}/{self.total_steps}",
            f"loss {self.smoothed_loss:.4f}",
            f"lr {metrics['lr']:.2e}",
        ]
        if "grad_norm" in metrics:
            parts.append(f"grad {metrics['grad_norm']:.3f}")
        parts += [
            f"{metrics.get('samples_per_s', 0.0):.1f} samples/s",
            f"{metrics.get('tokens_per_s', 0.0):.0f} tok/s",
            f"elapsed {_clock(elapsed)}",
            f"eta {_clock(eta)}",
        ]
        return " | ".join(parts)


def _rich_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("lr {task.fields[lr]:.2e}"),
        TextColumn("{task.fields[samples_per_s]:.1f} samples/s"),
        TextColumn("{task.fields[tokens_per_s]:.0f} tok/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))
