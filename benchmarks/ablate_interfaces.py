"""The modality-interface ablation: every connector, same world, data, steps and LM.

Stage 0 (vision encoder, text LM) runs once into a shared directory; each connector
then gets stage 1 (alignment) and stage 2 (instruction tuning) of the quickstart recipe
from those same parts, with the same number of steps and samples, through
`ocelli.train.runners.run_recipe`, and is scored on the world's test split
(`evaluate_world_vqa`) beside the blind baseline (the most common training answer per
question type: what a model scores without looking). The row `expert` is the
expert-model interface: an mlp model after stage 1 alone (trained to describe images)
captions each test image and stage 0's text LM, which never sees pixels, answers from
the caption (`ocelli.generate.ExpertPipeline`). Recorded per connector: visual
tokens per image in the LM's sequence, parameters (connector, and trained in stage 2),
stage 2 training samples/s, accuracy overall and per question type.

    python benchmarks/ablate_interfaces.py                       # the documented budget
    python benchmarks/ablate_interfaces.py --steps 40 --connectors mlp,qformer --no-docs
    python benchmarks/ablate_interfaces.py --tiny --out /tmp/ablate   # smoke test sizes
    python benchmarks/ablate_interfaces.py --sweep --reuse-stage0  # tokens/resolution sweep

`--sweep` runs the visual-token and resolution sweep instead (benchmarks/ablate_sweep.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as common

NAME = "ablate_interfaces"
EXPERT = "expert"  # captioner + text-only LM: not a connector, a row of its own
EXPERT_CAPTION_TOKENS = 96
CONNECTORS = [
    "mlp",
    "qformer",
    "perceiver",
    "pixel-shuffle",
    "c-abstractor",
    "xattn",
    "adapter",
    "visual-expert",
    "patches",
    EXPERT,
]
PLOT_PATH = common.REPO_ROOT / "docs" / "images" / "ablate_interfaces.png"
SHARED_STAGES = ["vision", "text"]  # independent of the connector: run once
CONNECTOR_STAGES = ["align", "instruct"]
SHARED_PARTS = ["world", "tokenizer", "vision", "text"]
# A quickstart-sized world with a budget that runs in ~15 minutes on 2 shared cores.
BUDGET = [
    "world.train_images=600",
    "world.val_images=0",
    "world.test_images=100",
    "world.cogent_images=0",
    "vision.train.max_steps=30",
    "text.train.max_steps=40",
    "perceive.enabled=false",
    "dpo.enabled=false",
]
# Seconds-sized models and world for the smoke test (tests/model/test_interfaces_train.py).
TINY = [
    "world.train_images=32",
    "world.val_images=0",
    "world.test_images=4",
    "world.cogent_images=0",
    "world.langs=[en]",
    "model.language_model_overrides={hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2}",
    "model.vision_overrides={hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 2}",
    "model.vision=siglip-tiny",
    "vision.train.max_steps=2",
    "text.train.max_steps=2",
    "vision.train.batch_size=8",
    "text.train.batch_size=8",
    "align.train.batch_size=8",
    "instruct.train.batch_size=8",
    "perceive.enabled=false",
    "dpo.enabled=false",
]


@dataclass
class AblationConfig:
    recipe: str = "quickstart"
    steps: int = 30  # per connector stage (alignment, then instruction tuning)
    connectors: list[str] = field(default_factory=lambda: list(CONNECTORS))
    overrides: list[str] = field(default_factory=list)  # of the recipe, for every connector
    eval_limit: int | None = 100  # test questions scored per connector
    sweep: list[str] = field(default_factory=list)  # variant names (ablate_sweep.py)


def parse_args(argv: Sequence[str] | None) -> tuple[AblationConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=AblationConfig.steps)
    parser.add_argument("--connectors", default=",".join(CONNECTORS), help="comma-separated")
    parser.add_argument(
        "--out", type=Path, default=common.REPO_ROOT / "runs" / NAME, help="run directories"
    )
    parser.add_argument("--results", type=Path, default=None, help="default: results/NAME.json")
    parser.add_argument("--docs", type=Path, default=common.DOCS_PATH)
    parser.add_argument("--plot", type=Path, default=None, help="default: docs/images/NAME.png")
    parser.add_argument("--no-docs", action="store_true", help="JSON and plot only")
    parser.add_argument("--tiny", action="store_true", help="tiny world and models (smoke test)")
    parser.add_argument("--eval-limit", type=int, default=AblationConfig.eval_limit)
    parser.add_argument("--threads", type=int, default=None, help="default: one per core")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--sweep",
        nargs="?",
        const="all",
        default=None,
        help="run the token/resolution sweep: 'all' or comma-separated variants (qformer-8, "
        "c-abstractor-16, patches-32px, ...) instead of the connectors",
    )
    parser.add_argument(
        "--reuse-stage0",
        action="store_true",
        help="keep OUT/_shared's stage 0 when its recipe matches this one",
    )
    args = parser.parse_args(argv)
    name = NAME if args.sweep is None else f"{NAME}_sweep"
    args.results = args.results or common.RESULTS_DIR / f"{name}.json"
    args.plot = args.plot or PLOT_PATH.with_name(f"{name}.png")
    connectors = [name.strip() for name in args.connectors.split(",") if name.strip()]
    overrides = (TINY if args.tiny else BUDGET) + args.set
    config = AblationConfig("quickstart", args.steps, connectors, overrides, args.eval_limit)
    return config, args


def load_recipe(config: AblationConfig, connector: str, extra: Sequence[str] = ()) -> Any:
    from ocelli.train.recipe import load_recipe as load

    steps = [f"{stage}.train.max_steps={config.steps}" for stage in CONNECTOR_STAGES]
    # Warm-up of the recipe's own length would be most of a short run.
    warmup = [f"{stage}.train.warmup_steps={config.steps // 10}" for stage in CONNECTOR_STAGES]
    connector_choice = [f"model.connector={connector}", *extra]
    return load(config.recipe, [*config.overrides, *steps, *warmup, *connector_choice])


def link_shared(shared: Path, run_dir: Path) -> None:
    """The connector's run reads world, tokenizer and stage 0 from the shared run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for part in SHARED_PARTS:
        target = run_dir / part
        if (shared / part).exists() and not target.exists():
            target.symlink_to((shared / part).resolve())


def run_connector(
    config: AblationConfig,
    connector: str,
    out: Path,
    variant: str | None = None,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Stages 1 and 2 for one connector (a sweep `variant` adds recipe overrides `extra`
    and runs in its own directory), then its test-split scores and sizes."""
    from ocelli.train.runners import run_recipe

    run_dir = out / (variant or connector)
    link_shared(out / "_shared", run_dir)
    recipe = load_recipe(config, connector, extra)
    began = time.perf_counter()
    summary = run_recipe(recipe, run_dir, stages=CONNECTOR_STAGES, progress=False)
    row = {"connector": connector, "train_wall_s": round(time.perf_counter() - began, 1)}
    if variant is not None:
        row = {"variant": variant, **row}
    instruct = summary["stages"]["instruct"]
    row["samples_per_s"] = instruct["samples_per_s"]
    row["final_loss"] = instruct["final_loss"]
    row.update(model_sizes(run_dir / "instruct" / "final", recipe))
    row.update(evaluate(run_dir, config.eval_limit))
    return row


def run_expert(config: AblationConfig, out: Path) -> dict[str, Any]:
    """Stage 1 of the mlp recipe gives the captioner; stage 0's text LM answers."""
    from ocelli.generate import ExpertPipeline
    from ocelli.train.runners import run_recipe

    run_dir = out / EXPERT
    link_shared(out / "_shared", run_dir)
    began = time.perf_counter()
    recipe = load_recipe(config, "mlp")
    summary = run_recipe(recipe, run_dir, stages=["align"], progress=False)
    row = {"connector": EXPERT, "train_wall_s": round(time.perf_counter() - began, 1)}
    row["samples_per_s"] = summary["stages"]["align"]["samples_per_s"]
    row["final_loss"] = summary["stages"]["align"]["final_loss"]
    sizes = model_sizes(run_dir / "align" / "final", recipe)
    # the LM's sequence holds the caption's text tokens, never image features; nothing
    # is trained in stage 2
    sizes.update(image_tokens=f"text <={EXPERT_CAPTION_TOKENS}", stage2_trained_parameters=0)
    row.update(sizes)
    pipeline = ExpertPipeline.from_dirs(
        run_dir / "align" / "final",
        run_dir / "text" / "final",
        caption_max_new_tokens=EXPERT_CAPTION_TOKENS,
    )
    row.update(evaluate(run_dir, config.eval_limit, pipeline))
    # the same LM reading the world's exact descriptions: what perfect captions would give
    exact = ExpertPipeline(WorldCaptions(run_dir / "world" / "test"), pipeline.answerer)
    row["exact_caption_accuracy"] = evaluate(run_dir, config.eval_limit, exact)["accuracy"]
    return row


class WorldCaptions:
    """Stands in for a captioner: each test image's exact detailed description from the
    world's captions.jsonl, in the language of the caption prompt."""

    def __init__(self, split_dir: Path) -> None:
        import json

        self.by_image = {}
        for line in (split_dir / "captions.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            key = (str((split_dir / record["image"]).resolve()), record["lang"])
            self.by_image[key] = record["detailed"]

    def chat_batch(self, images: list[Any], prompts: list[str], **_: Any) -> list[str]:
        from ocelli.generate.expert import prompt_language

        return [
            self.by_image[(str(Path(image).resolve()), prompt_language(prompt))]
            for image, prompt in zip(images, prompts, strict=True)
        ]


def model_sizes(model_dir: Path, recipe: Any) -> dict[str, Any]:
    from ocelli.model import OcelliForConditionalGeneration

    model = OcelliForConditionalGeneration.from_pretrained(model_dir)
    by_part = model.num_parameters_by_part()
    trained = sum(by_part[part] for part in recipe.instruct.lr_by_part)
    config = model.config
    return {
        # in the LM's sequence; xattn and adapter reach the LM through their own
        # latents and take one placeholder per image
        "image_tokens": config.num_image_tokens,
        # pixels per side the model reads: the encoder's input, or the patches connector's
        "image_size": config.connector_config.get("image_size")
        or getattr(config.vision_config, "image_size", None),
        "connector_parameters": by_part["connector"],
        "stage2_trained_parameters": trained,
        "total_parameters": sum(by_part.values()),
    }


def evaluate(run_dir: Path, limit: int | None, pipeline: Any = None) -> dict[str, Any]:
    from ocelli.eval.world_vqa import blind_baseline, evaluate_world_vqa
    from ocelli.generate import load

    test_dir = run_dir / "world" / "test"
    began = time.perf_counter()
    if pipeline is None:
        pipeline = load(run_dir / "instruct" / "final")
    result = evaluate_world_vqa(pipeline, test_dir, limit=limit, progress=False)
    blind = blind_baseline(run_dir / "world" / "train", result.records)
    return {
        "accuracy": result.metrics["accuracy"],
        "by_type": result.metrics["by_type"],
        "num_questions": result.metrics["num_questions"],
        "blind_accuracy": blind["accuracy"],
        "blind_by_type": blind["by_type"],
        "eval_wall_s": round(time.perf_counter() - began, 1),
    }


def run(config: AblationConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Stage 0 once, then each connector; the results are written after every
    connector, so a run cut short still leaves the figures of those that finished."""
    from ocelli.model import CONNECTORS as REGISTRY

    for name in config.connectors:
        if name != EXPERT:
            REGISTRY.get(name)  # a misspelt name fails now, listing the registered ones
    results: dict[str, Any] = {
        "rows": [],
        "threads": common.set_threads(args.threads),
        "load_average": common.load_average(),
    }
    results.update(run_shared_stage0(config, args))
    record: dict[str, Any] = {}
    for connector in config.connectors:
        print(f"[{NAME}] {connector}", file=sys.stderr, flush=True)
        if connector == EXPERT:
            results["rows"].append(run_expert(config, args.out))
        else:
            results["rows"].append(run_connector(config, connector, args.out))
        results["load_average_after"] = common.load_average()
        results["connectors_done"] = len(results["rows"])
        record = publish(config, args, results)
    return record


def run_shared_stage0(config: AblationConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Stage 0 with the mlp recipe (the connector plays no part in it) into OUT/_shared,
    or, with --reuse-stage0, the one already there when it was trained from this recipe."""
    from ocelli.train.runners import run_recipe

    shared, recipe = args.out / "_shared", load_recipe(config, "mlp")
    if args.reuse_stage0 and stage0_matches(recipe, shared):
        summary = json.loads((shared / "train_summary.json").read_text(encoding="utf-8"))
        wall = sum(summary["timings"].get(stage, 0.0) for stage in SHARED_STAGES)
        return {"shared_stage0_wall_s": round(wall, 1), "shared_stage0_reused": True}
    began = time.perf_counter()
    run_recipe(recipe, shared, stages=SHARED_STAGES)
    return {"shared_stage0_wall_s": round(time.perf_counter() - began, 1)}


def stage0_matches(recipe: Any, shared: Path) -> bool:
    """Whether each stage 0 part in `shared` was trained from what `recipe` says of the
    world, the models and stage 0 (the connector and stages 1-2 may differ). A saved
    recipe is read into today's Recipe, so fields added since take their defaults."""
    from dataclasses import asdict

    from ocelli.config import from_dict
    from ocelli.errors import ConfigError

    def stage0_view(recipe: Any) -> dict[str, Any]:
        full = asdict(recipe)
        view = {key: full[key] for key in ("seed", "world", "vision_objective", *SHARED_STAGES)}
        view["model"] = {
            key: value
            for key, value in full["model"].items()
            if key not in ("connector", "connector_config")
        }
        return view

    wanted = stage0_view(recipe)
    for stage in SHARED_STAGES:
        saved = shared / stage / "recipe.json"
        if not (shared / stage / "final").exists() or not saved.is_file():
            return False
        try:
            saved_recipe = from_dict(type(recipe), json.loads(saved.read_text())["recipe"])
        except ConfigError:  # written by a version whose recipe had other fields
            return False
        if stage0_view(saved_recipe) != wanted:
            return False
    return (shared / "train_summary.json").is_file()


def publish(config: AblationConfig, args: argparse.Namespace, results: dict[str, Any]) -> dict:
    """JSON, plot and docs section of the rows so far."""
    record = common.write_results(args.results, NAME, config, results)
    plot(record, args.plot)
    if not args.no_docs:
        common.update_docs_section(args.docs, NAME, render(record, args.plot))
    return record


def render(record: dict[str, Any], plot_path: Path | None) -> str:
    results, config = record["results"], record["config"]
    rows = results["rows"]
    types = sorted({t for row in rows for t in row["by_type"]})
    table = common.markdown_table(
        [
            "connector",
            "image tokens",
            "connector params",
            "stage 2 trained params",
            "stage 2 samples/s",
            "test acc",
            "blind acc",
            *types,
        ],
        [
            [
                f"`{row['connector']}`",
                row["image_tokens"],
                f"{row['connector_parameters']:,}",
                f"{row['stage2_trained_parameters']:,}",
                f"{row['samples_per_s']:.1f}",
                f"{row['accuracy']:.3f}",
                f"{row['blind_accuracy']:.3f}",
                *[f"{row['by_type'].get(t, 0):.2f}" for t in types],
            ]
            for row in rows
        ],
    )
    above = [row["connector"] for row in rows if row["accuracy"] > row["blind_accuracy"] + 0.02]
    verdict = (
        "Above the blind baseline by more than 2 points: " + ", ".join(f"`{c}`" for c in above)
        if above
        else "No connector beats the blind baseline by more than 2 points at this budget (the "
        "models have not yet learnt even the answer prior, let alone to use the image), so the "
        "table compares cost (tokens, parameters), not how well each interface passes the image"
    )
    load = f"{results['load_average']} before, {results.get('load_average_after')} after"
    speed = (
        f". The connectors ran one after another on a shared machine (1-min load average {load}), "
        "so samples/s across rows mixes the connector's cost with the load of the moment"
    )
    expert = next((row for row in rows if row["connector"] == EXPERT), None)
    if expert is not None and "exact_caption_accuracy" in expert:
        speed += (
            f". Given the world's exact descriptions instead of the captioner's, the expert "
            f"row's text LM scores {expert['exact_caption_accuracy']:.3f}"
        )
    plot = f"\n\n![accuracy by connector]({_relative(plot_path)})" if plot_path else ""
    return (
        f"### Modality interfaces (ablation)\n\n{table}\n\n{verdict}{speed}.{plot}\n\n"
        f"*{common.caption(record)} Recipe `{config['recipe']}` with "
        f"{', '.join(f'`{o}`' for o in config['overrides'])}; stage 0 shared "
        f"({results['shared_stage0_wall_s']:.0f} s); {config['steps']} steps each of stage 1 and "
        f"stage 2 per connector; {rows[0]['num_questions']} test questions; "
        f"{len(rows)} of {len(config['connectors'])} connectors done. "
        "Image tokens are those in the LM's sequence (xattn and adapter take one placeholder "
        "and reach the LM through their own latents); samples/s is stage 2's `train()` figure, "
        "its final save included. Row `expert`: an mlp model after stage 1 alone captions the "
        f"image (greedy, at most {EXPERT_CAPTION_TOKENS} tokens) and stage 0's text LM answers "
        "from the caption; its samples/s is stage 1's, and no stage 2 runs.*"
    )


def _relative(path: Path) -> str:
    try:
        return os.path.relpath(path, common.DOCS_PATH.parent)
    except ValueError:
        return str(path)


def plot(record: dict[str, Any], path: Path) -> None:
    """Test accuracy per connector, with each one's blind baseline as a marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["results"]["rows"]
    names = [row["connector"] for row in rows]
    figure, axes = plt.subplots(figsize=(max(6, 0.8 * len(rows) + 2), 3.6))
    axes.bar(names, [row["accuracy"] for row in rows], color="tab:blue", label="test accuracy")
    axes.scatter(
        names,
        [row["blind_accuracy"] for row in rows],
        color="black",
        marker="_",
        s=600,
        label="blind baseline",
        zorder=3,
    )
    axes.set_ylabel("world-vqa test accuracy")
    axes.set_ylim(0, 1)
    axes.tick_params(axis="x", rotation=30)
    axes.legend(loc="upper right")
    axes.set_title(f"{record['config']['steps']} steps per stage, same data and LM")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config, args = parse_args(argv)
    if args.sweep is not None:
        import ablate_sweep

        return ablate_sweep.main(config, args)
    record = run(config, args)
    print(render(record, args.plot))
    return record


if __name__ == "__main__":
    from ocelli.errors import ConfigError

    try:
        main(sys.argv[1:])
    except ConfigError as error:
        print(f"{NAME}: {error}", file=sys.stderr)
        sys.exit(2)
