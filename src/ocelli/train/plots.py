"""Loss curves drawn from metrics.jsonl files, so figures are produced by code."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

from ocelli.train.progress import read_metrics
from ocelli.utils.io import atomic_write_bytes


def plot_loss_curves(
    metrics_jsonl_paths_by_name: Mapping[str, str | Path],
    out_png: str | Path,
    title: str = "training loss",
    log_scale: bool = False,
) -> Path:
    """One loss-vs-step line per named metrics.jsonl file, written atomically to `out_png`."""
    # The Figure API with the Agg canvas draws without pyplot, so the process-wide
    # matplotlib backend (and any GUI) is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, path in metrics_jsonl_paths_by_name.items():
        records = [r for r in read_metrics(path) if "loss" in r]
        axes.plot([r["step"] for r in records], [r["loss"] for r in records], label=name)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    if log_scale:
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    if metrics_jsonl_paths_by_name:
        axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    out_png = Path(out_png)
    atomic_write_bytes(out_png, buffer.getvalue())
    return out_png
