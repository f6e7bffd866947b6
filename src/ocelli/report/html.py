"""The run report: sample images with question, model answer and truth; loss curves;
accuracy per question type and language; timings. One self-contained HTML file
(images embedded), written atomically."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from ocelli.utils import atomic_write_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1, h2 { font-weight: 600; } table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: left; }
th { background: #f3f3f3; } .ok { color: #1a7f37; } .bad { color: #cf222e; }
.samples { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; }
.sample { border: 1px solid #ddd; padding: 8px; font-size: 13px; }
.sample img { width: 100%; image-rendering: pixelated; } .meta { color: #666; }
.curves { display: flex; flex-wrap: wrap; gap: 12px; } .curves img { max-width: 540px; }
"""


def image_data_url(path_or_bytes: str | Path | bytes, mime: str = "image/png") -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def bar_chart_png(values: dict[str, float], title: str, ylabel: str = "accuracy") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(values) + 2), 3.2), dpi=110)
    ax.bar(list(values), list(values.values()), color="#4c72b0")
    ax.set_ylim(0, 1.05 if max(values.values(), default=1) <= 1 else None)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def html_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>(none)</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


def _samples_html(samples: list[dict[str, Any]], data_dir: Path) -> str:
    cards = []
    for sample in samples:
        mark = "ok" if sample["correct"] else "bad"
        cards.append(
            f'<div class="sample"><img src="{image_data_url(data_dir / sample["image"])}">'
            f'<div class="meta">{html.escape(sample["type"])} · {html.escape(sample["lang"])}</div>'
            f"<div>Q: {html.escape(sample['question'])}</div>"
            f'<div class="{mark}">model: {html.escape(sample["prediction"])}</div>'
            f"<div>truth: {html.escape(sample['answer'])}</div></div>"
        )
    return f'<div class="samples">{"".join(cards)}</div>'


def write_run_report(
    out_path: str | Path,
    title: str,
    evaluations: dict[str, dict[str, Any]],
    loss_curve_png: str | Path | None,
    timings: dict[str, float],
    summary_rows: list[dict[str, Any]],
    extra_html: str = "",
    validation_pngs: dict[str, Path] | None = None,
) -> Path:
    """`evaluations` maps a split name to {"metrics", "samples", "data_dir"};
    `validation_pngs` a stage name to its validation accuracy curve, shown beside the
    loss curves (the files that exist)."""
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Summary</h2>", html_table(summary_rows)]
    curves = [Path(loss_curve_png)] if loss_curve_png else []
    curves += list((validation_pngs or {}).values())
    curves = [path for path in curves if path.is_file()]
    if curves:
        title_of_curves = "Loss and validation curves" if len(curves) > 1 else "Loss curves"
        images = "".join(f'<img src="{image_data_url(path)}">' for path in curves)
        parts += [f"<h2>{title_of_curves}</h2>", f'<div class="curves">{images}</div>']
    for split, evaluation in evaluations.items():
        metrics = evaluation["metrics"]
        parts.append(
            f"<h2>{html.escape(split)}: accuracy {metrics['accuracy']:.3f} "
            f"on {metrics['num_questions']} questions</h2>"
        )
        for key, label in (("by_type", "per question type"), ("by_lang", "per language")):
            if metrics.get(key):
                chart = bar_chart_png(metrics[key], f"{split}: accuracy {label}")
                parts.append(f'<img src="{image_data_url(chart)}">')
        rows = [{"type/lang": k, "accuracy": v} for k, v in metrics.get("by_type_lang", {}).items()]
        parts.append(html_table(rows))
        if evaluation.get("samples"):
            parts += [
                "<h3>Samples</h3>",
                _samples_html(evaluation["samples"], Path(evaluation["data_dir"])),
            ]
    parts += [
        "<h2>Timings (seconds)</h2>",
        html_table([{"step": k, "seconds": round(v, 1)} for k, v in timings.items()]),
    ]
    parts.append(extra_html)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    out_path = Path(out_path)
    atomic_write_text(out_path, page)
    return out_path
