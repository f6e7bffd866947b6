"""What makes a small MLLM trained from scratch use its image, and how fast.

Runs the quickstart recipe under named variants (encoder type, stage 0 objective,
which parts train in stage 2, ...) on one shared world and tokenizer, evaluates each on
the in-distribution test split and the CoGenT-B hold-out, and writes one JSON file plus
a markdown table. Variants run in parallel processes, each limited to `--threads`
CPU threads (2 reproduces the 2-core set-up); `--device cuda` runs the same steps on a
GPU to sweep quickly.

    python benchmarks/study_small_mllm.py --out runs/study --variants all --parallel 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VIT = ["model.vision=siglip-tiny", "model.vision_overrides={}", "model.vision_feature_layer=-1"]
NO_VISION_STAGE = [
    "vision.enabled=false",
    "instruct.lr_by_part={connector: 1.0e-3, language_model: 1.0e-3, vision: 1.0e-3}",
]
# slug -> (what it tests, overrides of the quickstart recipe)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "convnext-dense-contrastive": ("ConvNeXt, stage 0 dense + contrastive (quickstart)", []),
    "convnext-contrastive": (
        "ConvNeXt, stage 0 contrastive only",
        ["vision_objective.dense_weight=0"],
    ),
    "convnext-dense": ("ConvNeXt, stage 0 dense only", ["vision_objective.contrastive_weight=0"]),
    "convnext-no-stage0": ("ConvNeXt, no stage 0, encoder trained in stage 2", NO_VISION_STAGE),
    "vit-dense-contrastive": ("ViT (SigLIP), stage 0 dense + contrastive", VIT),
    "vit-contrastive": (
        "ViT (SigLIP), stage 0 contrastive only",
        VIT + ["vision_objective.dense_weight=0"],
    ),
    "vit-no-stage0": (
        "ViT (SigLIP), no stage 0, encoder trained in stage 2",
        VIT + NO_VISION_STAGE,
    ),
    "no-stage1": ("quickstart without stage 1 (alignment)", ["align.enabled=false"]),
    "encoder-tuned": (
        "quickstart, encoder also tuned in stage 2 (lr 2e-4)",
        ["instruct.lr_by_part={connector: 1.0e-3, language_model: 1.0e-3, vision: 2.0e-4}"],
    ),
    "no-lm-pretraining": ("quickstart without LM pretraining", ["text.enabled=false"]),
    "text-corpus": (
        "LM stage 0 on the plain corpus instead of text conversations",
        ["text.data=corpus.txt"],
    ),
    "align-short-captions": (
        "stage 1 on short captions instead of full descriptions",
        ["align.data=pretrain.json"],
    ),
    "long-instruct": ("quickstart with 3x the stage 2 steps", ["instruct.train.max_steps=2400"]),
    "convnext-patch8": (
        "ConvNeXt with an 8px patchify stem, one stage (64 tokens)",
        ["model.vision_overrides={patch_size: 8, hidden_sizes: [96], depths: [3]}"],
    ),
    "convnext-16-tokens": (
        "ConvNeXt, three stages, 16 tokens (4x4)",
        ["model.vision_overrides={patch_size: 4, hidden_sizes: [48, 96, 192], depths: [1, 2, 2]}"],
    ),
}


def run_variant(
    name: str, out: Path, shared: Path, recipe: str, threads: int, device: str, extra: list[str]
) -> dict:
    description, overrides = VARIANTS[name]
    run_dir = out / name
    run_dir.mkdir(parents=True, exist_ok=True)
    for piece in ("world", "tokenizer"):  # one world and tokenizer for every variant
        if not (run_dir / piece).exists():
            (run_dir / piece).symlink_to((shared / piece).resolve())
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    command = [
        sys.executable,
        "-m",
        "ocelli.cli",
        "quickstart",
        "--recipe",
        recipe,
        "--out",
        str(run_dir),
    ]
    for item in overrides + extra + [f"eval.device={device}"]:
        command += ["--set", item]
    began = time.perf_counter()
    with open(run_dir / "log.txt", "w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    row = {
        "variant": name,
        "description": description,
        "overrides": overrides,
        "exit_code": code,
        "wall_s": round(time.perf_counter() - began, 1),
    }
    metrics_path = run_dir / "metrics.json"
    if code == 0 and metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        row["test"] = metrics["evaluation"].get("test", {})
        row["cogent_b"] = metrics["evaluation"].get("cogent-b", {})
        row["timings_s"] = metrics["timings_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--variants", default="all", help="comma-separated names or 'all'")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--set", action="append", default=[], help="override for every variant")
    args = parser.parse_args()
    out = Path(args.out)
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    shared = out / "_shared"
    if not (shared / "tokenizer").exists():  # world + tokenizer only: zero training steps
        from ocelli.train.recipe import load_recipe
        from ocelli.train.runners import build_tokenizer, prepare_world
        from ocelli.train.stages import RunPaths

        recipe = load_recipe(args.recipe, args.set)
        prepare_world(recipe, RunPaths(shared))
        build_tokenizer(recipe, RunPaths(shared))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        rows = list(
            pool.map(
                lambda n: run_variant(
                    n, out, shared, args.recipe, args.threads, args.device, args.set
                ),
                names,
            )
        )
    from ocelli.utils import atomic_write_json, provenance

    atomic_write_json(
        out / "study.json",
        {"rows": rows, "device": args.device, "threads": args.threads, "provenance": provenance()},
    )
    print(markdown(rows))


def markdown(rows: list[dict]) -> str:
    types = sorted({t for r in rows for t in r.get("test", {}).get("by_type", {})})
    head = "| variant | test acc | CoGenT-B acc | " + " | ".join(types) + " | train s |"
    lines = [head, "|" + "---|" * (4 + len(types))]
    for r in rows:
        test = r.get("test", {})
        train_s = sum(
            v
            for k, v in r.get("timings_s", {}).items()
            if k in ("vision", "text", "align", "perceive", "instruct")
        )
        lines.append(
            f"| {r['description']} | {test.get('accuracy', 'failed')} | "
            f"{r.get('cogent_b', {}).get('accuracy', '')} | "
            + " | ".join(str(test.get("by_type", {}).get(t, "")) for t in types)
            + f" | {train_s:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
