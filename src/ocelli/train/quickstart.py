"""`ocelli quickstart`: world -> stage 0 -> stage 1 -> stage 2 -> stage 3 (DPO) ->
evaluation of the SFT and the aligned model side by side (world VQA, hallucination probes,
the recipe's benchmark suite) -> report."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ocelli.train.quickstart_suite import (
    check_suite,
    evaluate_suite,
    suite_html,
    suite_seconds,
)
from ocelli.train.recipe import STAGES, Recipe
from ocelli.train.runners import run_recipe
from ocelli.utils import atomic_write_json, provenance

EVAL_SPLITS = {
    "test": "in-distribution test",
    "cogent-b": "compositional hold-out (CoGenT B)",
}
# Hallucination probes on the test split (ocelli.eval tasks): object existence asked
# POPE's way with its three kinds of absent objects, and CHAIR over generated captions.
HALLUCINATION_TASKS = ("pope_random", "pope_popular", "pope_adversarial", "chair")
HALLUCINATION_METRICS = ("accuracy", "f1", "yes_ratio", "chair_i", "chair_s")
# The models a run is evaluated on: the stage whose final/ holds it, and where its
# results go under eval/. The SFT model's keep the places they had before stage 3.
EVAL_MODELS = {"sft": ("instruct", ""), "aligned": ("dpo", "dpo")}


def evaluate_run(
    recipe: Recipe, run_dir: Path, progress: bool = True, stage: str = "instruct", subdir: str = ""
) -> dict[str, Any]:
    import torch

    from ocelli.eval.world_vqa import blind_baseline, evaluate_world_vqa
    from ocelli.generate import load
    from ocelli.utils.io import atomic_write_text

    device = recipe.eval.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    pipeline = load(run_dir / stage / "final", device=device)
    evaluations = {}
    for split in EVAL_SPLITS:
        data_dir = run_dir / "world" / split
        if not (data_dir / "questions.jsonl").is_file():
            continue
        result = evaluate_world_vqa(
            pipeline,
            data_dir,
            limit=recipe.eval.limit,
            batch_size=recipe.eval.batch_size,
            max_new_tokens=recipe.eval.max_new_tokens,
            progress=progress,
            description=f"evaluating {split}",
        )
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.records)
        atomic_write_text(run_dir / "eval" / subdir / f"{split}.jsonl", lines)
        result.metrics["blind_baseline"] = blind_baseline(
            run_dir / "world" / "train", result.records
        )
        evaluations[split] = {
            "metrics": result.metrics,
            "records": result.records,
            "data_dir": data_dir,
        }
    return evaluations


def evaluate_hallucination(
    recipe: Recipe, run_dir: Path, progress: bool = True, stage: str = "instruct", subdir: str = ""
) -> dict[str, Any]:
    """POPE and CHAIR on the test split, written to eval/[subdir/]hallucination/
    (results.json, per-sample answers, report.html); returns each task's headline metrics."""
    from ocelli.eval.harness import evaluate

    data_dir = run_dir / "world" / "test"
    if not (data_dir / "scenes.jsonl").is_file():
        return {}
    results = evaluate(
        str(run_dir / stage / "final"),
        ",".join(HALLUCINATION_TASKS),
        run_dir / "eval" / subdir / "hallucination",
        data_dir=data_dir,
        limit=recipe.eval.limit,
        batch_size=recipe.eval.batch_size,
        progress=progress,
    )
    return {
        name: {
            key: round(value, 4)
            for key, value in task["metrics"].items()
            if key in HALLUCINATION_METRICS
        }
        for name, task in results["tasks"].items()
    }


def metrics_of(
    evaluations: dict[str, Any], hallucination: dict[str, Any], suite: dict[str, Any]
) -> dict[str, Any]:
    """One model's figures: VQA metrics per split, the hallucination probes, the suite."""
    return {
        "evaluation": {split: ev["metrics"] for split, ev in evaluations.items()},
        "hallucination": hallucination,
        "suite": suite,
    }


def evaluate_aligned(recipe: Recipe, run_dir: Path, progress: bool = True) -> dict[str, Any]:
    """The stage 3 model's figures (results under eval/dpo/), empty without stage 3."""
    stage, subdir = EVAL_MODELS["aligned"]
    if not (run_dir / stage / "final" / "config.json").is_file():
        return {}
    evaluations = evaluate_run(recipe, run_dir, progress, stage, subdir)
    hallucination = evaluate_hallucination(recipe, run_dir, progress, stage, subdir)
    suite = evaluate_suite(recipe, run_dir, progress, stage, subdir)
    return {"model": f"{stage}/final", **metrics_of(evaluations, hallucination, suite)}


def side_by_side(sft: dict[str, Any], aligned: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of (measure, SFT, aligned, change) for every figure both models have."""
    if not aligned:
        return []
    rows = []
    for split, values in sft["evaluation"].items():
        if split in aligned["evaluation"]:
            rows.append(
                (
                    f"VQA accuracy, {split}",
                    values["accuracy"],
                    aligned["evaluation"][split]["accuracy"],
                )
            )
    # The suite's figures have their own SFT-vs-aligned table (quickstart_suite).
    for task, values in sft["hallucination"].items():
        for key, value in values.items():
            theirs = aligned["hallucination"].get(task, {}).get(key)
            if theirs is not None:
                rows.append((f"{task} {key}", value, theirs))
    return [
        {
            "measure": name,
            "SFT (instruct/final)": round(mine, 4),
            "aligned (dpo/final)": round(theirs, 4),
            "change": round(theirs - mine, 4),
        }
        for name, mine, theirs in rows
    ]


def aligned_html(rows: list[dict[str, Any]]) -> str:
    from ocelli.report import html_table

    if not rows:
        return "<h2>SFT vs aligned</h2><p>Stage 3 (dpo) did not run in this recipe.</p>"
    return (
        "<h2>SFT vs aligned (stage 3, DPO)</h2>"
        + html_table(rows)
        + '<p>Aligned model\'s answers: <a href="eval/dpo/hallucination/report.html">'
        "eval/dpo/hallucination/report.html</a></p>"
    )


def pick_samples(records: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """A spread of samples across question types and languages, wrong ones included."""
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        by_key.setdefault((record["type"], record["lang"]), []).append(record)
    picked: list[dict[str, Any]] = []
    while len(picked) < count and any(by_key.values()):
        for key in sorted(by_key):
            if by_key[key] and len(picked) < count:
                picked.append(by_key[key].pop(0))
    return picked


def run_quickstart(
    recipe: Recipe, out_dir: str | Path, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    from ocelli.report import html_table, write_run_report
    from ocelli.train.plots import VAL_ACCURACY_PNG, plot_loss_curves

    check_suite(recipe.eval)
    out_dir = Path(out_dir)
    began = time.perf_counter()
    trained = run_recipe(recipe, out_dir, resume=resume, progress=progress)
    timings = dict(trained["timings"])
    start_eval = time.perf_counter()
    evaluations = evaluate_run(recipe, out_dir, progress=progress)
    hallucination = evaluate_hallucination(recipe, out_dir, progress=progress)
    suite = evaluate_suite(recipe, out_dir, progress=progress)
    aligned = evaluate_aligned(recipe, out_dir, progress=progress)
    timings["evaluation"] = time.perf_counter() - start_eval
    timings["evaluation: suite"] = suite_seconds(suite, aligned.get("suite", {}))
    timings["total"] = time.perf_counter() - began
    curves = {
        name: out_dir / name / "metrics.jsonl"
        for name in STAGES
        if (out_dir / name / "metrics.jsonl").is_file()
    }
    loss_png = out_dir / "loss_curves.png"
    plot_loss_curves(curves, loss_png)
    metrics = {
        "recipe": asdict(recipe),
        "evaluation": {split: ev["metrics"] for split, ev in evaluations.items()},
        "hallucination": hallucination,
        "suite": suite,
        "training": trained["stages"],
        "aligned": aligned,
        "sft_vs_aligned": side_by_side(metrics_of(evaluations, hallucination, suite), aligned),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "provenance": provenance(),
    }
    if "test" in evaluations and "cogent-b" in evaluations:
        metrics["cogent_gap"] = round(
            evaluations["test"]["metrics"]["accuracy"]
            - evaluations["cogent-b"]["metrics"]["accuracy"],
            4,
        )
    atomic_write_json(out_dir / "metrics.json", metrics)
    summary_rows = [
        {
            "split": EVAL_SPLITS[s],
            "accuracy": ev["metrics"]["accuracy"],
            "blind baseline (same questions)": ev["metrics"]["blind_baseline"]["accuracy"],
            "questions": ev["metrics"]["num_questions"],
        }
        for s, ev in evaluations.items()
    ]
    report_evals = {
        EVAL_SPLITS[split]: {
            "metrics": ev["metrics"],
            "data_dir": ev["data_dir"],
            "samples": pick_samples(ev["records"], recipe.eval.num_report_samples),
        }
        for split, ev in evaluations.items()
    }
    stage_rows = [
        {
            "stage": name,
            "steps": summary.get("steps"),
            "final loss": summary.get("final_loss"),
            "samples/s": summary.get("samples_per_s"),
            "seconds": summary.get("wall_time_s"),
            "encoder accuracy (val, per object)": ", ".join(
                f"{k} {v:.2f}" for k, v in summary.get("dense_accuracy_val", {}).items()
            ),
        }
        for name, summary in trained["stages"].items()
    ]
    report = write_run_report(
        out_dir / "report.html",
        f"ocelli quickstart: {recipe.name}",
        report_evals,
        loss_png,
        timings,
        summary_rows,
        extra_html="<h2>Stages</h2>"
        + html_table(stage_rows)
        + "<h2>Hallucination (test split)</h2>"
        + html_table([{"task": name, **values} for name, values in hallucination.items()])
        + '<p>Per-sample answers and plots: <a href="eval/hallucination/report.html">'
        "eval/hallucination/report.html</a></p>"
        + suite_html(suite, aligned.get("suite", {}))
        + aligned_html(metrics["sft_vs_aligned"]),
        validation_pngs={name: out_dir / name / VAL_ACCURACY_PNG for name in STAGES},
    )
    return {"metrics": metrics, "report": report}
