"""Loss and validation curves drawn from metrics.jsonl files, so figures are produced by
code. Validation records (ocelli.train.validation) share the files with the training
records: they carry `val_loss` and, for instruct, `val_accuracy`, but no `loss`."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ocelli.train.progress import METRICS_FILE, read_metrics
from ocelli.utils.io import atomic_write_bytes

VAL_ACCURACY_PNG = "val_accuracy.png"


def plot_loss_curves(
    metrics_jsonl_paths_by_name: Mapping[str, str | Path],
    out_png: str | Path,
    title: str = "training loss",
    log_scale: bool = False,
) -> Path:
    """One loss-vs-step line per named metrics.jsonl file, and its validation loss dashed
    in the same colour when it has one, written atomically to `out_png`."""
    figure, axes = _figure()
    for name, path in metrics_jsonl_paths_by_name.items():
        records = read_metrics(path)
        steps, losses = _series(records, "loss")
        (line,) = axes.plot(steps, losses, label=name)
        steps, losses = _series(records, "val_loss")
        if steps:
            axes.plot(
                steps, losses, "--", marker=".", color=line.get_color(), label=f"{name} (val)"
            )
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    if log_scale:
        axes.set_yscale("log")
    if metrics_jsonl_paths_by_name:
        axes.legend()
    return _save(figure, out_png)


def plot_val_accuracy(stage_dir: str | Path) -> Path | None:
    """STAGE/val_accuracy.png: validation accuracy against step, the blind baseline of the
    same questions dashed, so the step where the model starts to use its image shows as
    the curve leaving that line. None (and no file) without accuracy records."""
    metrics = Path(stage_dir) / METRICS_FILE
    records = read_metrics(metrics) if metrics.is_file() else []
    steps, accuracy = _series(records, "val_accuracy")
    if not steps:
        return None
    figure, axes = _figure()
    axes.plot(steps, accuracy, marker="o", label="validation accuracy")
    blind_steps, blind = _series(records, "val_blind_accuracy")
    if blind_steps:
        axes.plot(blind_steps, blind, "--", color="grey", label="blind baseline")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("exact-match accuracy")
    axes.set_ylim(0, 1)
    axes.set_title(f"{Path(stage_dir).name}: validation accuracy")
    axes.legend()
    return _save(figure, Path(stage_dir) / VAL_ACCURACY_PNG)


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    kept = [r for r in records if isinstance(r.get(key), int | float)]
    return [r["step"] for r in kept], [r[key] for r in kept]


def _figure() -> tuple[Any, Any]:
    # The Figure API with the Agg canvas draws without pyplot, so the process-wide
    # matplotlib backend (and any GUI) is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.grid(alpha=0.3)
    return figure, axes


def _save(figure: Any, out_png: str | Path) -> Path:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    out_png = Path(out_png)
    atomic_write_bytes(out_png, buffer.getvalue())
    return out_png
