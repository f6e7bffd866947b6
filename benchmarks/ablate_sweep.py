"""The modality-interface ablation's sweep: visual tokens and image resolution.

A variant is a connector plus one connector setting, named `<connector>-<value>`:
`qformer-8` (8 learned queries), `c-abstractor-4` (a 2x2 pooled grid), `patches-32px`
(the encoder-free connector reading 32x32 images). Each runs exactly like a row of the
connector table (benchmarks/ablate_interfaces.py): the same shared stage 0, stage 1 and
stage 2 for the same steps, the same test questions and blind baseline. Only connector
settings are swept, so the shared stage 0 stays valid; the image size is swept only for
`patches`, which has no encoder: the encoder was trained at the world's size, and
another size would need another stage 0.

    python benchmarks/ablate_interfaces.py --sweep --reuse-stage0           # all of SWEEP
    python benchmarks/ablate_interfaces.py --sweep qformer-8,patches-32px --tiny --out /tmp/s
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as common
import ablate_interfaces as ablation

from ocelli.errors import ConfigError

NAME = "ablate_interfaces_sweep"
# connector -> (the connector_config key a variant sets, the unit ending its name)
SWEPT = {
    "qformer": ("num_queries", ""),
    "c-abstractor": ("num_tokens", ""),
    "patches": ("image_size", "px"),
}
# The documented sweep. qformer and c-abstractor: the two highest test accuracies of the
# connector table (ablate_interfaces.json; `best_two` records them at run time).
SWEEP = [
    "qformer-8",
    "qformer-16",
    "qformer-32",
    "qformer-64",
    "c-abstractor-4",
    "c-abstractor-16",
    "c-abstractor-64",
    "patches-32px",
    "patches-48px",
    "patches-64px",
]


@dataclass(frozen=True)
class Variant:
    name: str
    connector: str
    option: str  # the connector_config key swept
    value: int

    @property
    def overrides(self) -> list[str]:
        return [f"model.connector_config={{{self.option}: {self.value}}}"]


def parse_variant(name: str) -> Variant:
    """`qformer-8` -> Variant(qformer, num_queries=8); ConfigError naming what is allowed."""
    connector, _, value = name.rpartition("-")
    if connector not in SWEPT:
        raise ConfigError(
            f"unknown sweep variant {name!r}; a variant is <connector>-<value> with connector "
            f"one of {', '.join(SWEPT)} ("
            + ", ".join(f"{c}-N{unit} sets {key}" for c, (key, unit) in SWEPT.items())
            + f"); the documented sweep: {', '.join(SWEEP)}"
        )
    option, unit = SWEPT[connector]
    digits = value[: -len(unit)] if unit and value.endswith(unit) else value
    if not digits.isdigit() or (unit and not value.endswith(unit)):
        raise ConfigError(
            f"sweep variant {name!r}: {value!r} is not a whole number{' of ' + unit if unit else ''};"
            f" write e.g. {connector}-16{unit} (sets connector_config.{option})"
        )
    return Variant(name, connector, option, int(digits))


def resolve_sweep(spec: str) -> list[Variant]:
    """'all' (or empty) -> SWEEP; otherwise comma-separated variant names."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names or names == ["all"]:
        names = list(SWEEP)
    if len(set(names)) != len(names):
        raise ConfigError(f"sweep variants repeat: {', '.join(names)}; name each once")
    return [parse_variant(name) for name in names]


def check_variant(variant: Variant, recipe: Any) -> None:
    """Build the variant's model from the recipe's presets (no stage 0 weights, a second
    at these sizes) so a value the connector refuses fails before any training."""
    from ocelli.model import OcelliForConditionalGeneration
    from ocelli.train.runners import needs_vision_encoder

    model = recipe.model
    with_encoder = needs_vision_encoder(recipe)
    try:
        OcelliForConditionalGeneration.from_components(
            vision=model.vision if with_encoder else None,
            language_model=model.language_model,
            connector=variant.connector,
            connector_config=model.connector_config,
            image_token_id=1,
            vocab_size=model.vocab_size,
            vision_overrides=model.vision_overrides if with_encoder else None,
            language_model_overrides=model.language_model_overrides,
            vision_feature_layer=model.vision_feature_layer,
            keep_cls=model.keep_cls,
        )
    except ConfigError as error:
        raise ConfigError(
            f"sweep variant {variant.name!r} (connector_config.{variant.option}="
            f"{variant.value}) is refused by connector {variant.connector}: {error}"
        ) from error


def best_two(path: Path) -> list[dict[str, Any]]:
    """The two connectors of the connector table with the highest test accuracy."""
    if not path.is_file():
        return []
    rows = json.loads(path.read_text(encoding="utf-8"))["results"]["rows"]
    ranked = sorted(rows, key=lambda row: row["accuracy"], reverse=True)
    return [
        {"connector": row["connector"], "accuracy": row["accuracy"], "blind": row["blind_accuracy"]}
        for row in ranked[:2]
    ]


def run(config: ablation.AblationConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Check every variant, stage 0 once (or reused), then each variant; the results are
    published after every variant, like the connector table's."""
    variants = resolve_sweep(args.sweep)
    config.sweep = [variant.name for variant in variants]
    config.connectors = list(dict.fromkeys(variant.connector for variant in variants))
    for variant in variants:
        check_variant(variant, ablation.load_recipe(config, variant.connector, variant.overrides))
    results: dict[str, Any] = {
        "rows": [],
        "threads": common.set_threads(args.threads),
        "load_average": common.load_average(),
        "best_two": best_two(common.RESULTS_DIR / f"{ablation.NAME}.json"),
    }
    results.update(ablation.run_shared_stage0(config, args))
    record: dict[str, Any] = {}
    for variant in variants:
        print(f"[{NAME}] {variant.name}", file=sys.stderr, flush=True)
        row = ablation.run_connector(
            config, variant.connector, args.out, variant.name, variant.overrides
        )
        results["rows"].append({**row, "option": variant.option, "value": variant.value})
        results["load_average_after"] = common.load_average()
        record = publish(args, common.write_results(args.results, NAME, config, results))
    return record


def publish(args: argparse.Namespace, record: dict[str, Any]) -> dict[str, Any]:
    plot(record, args.plot)
    if not args.no_docs:
        place_section(args.docs)
        common.update_docs_section(args.docs, NAME, render(record, args.plot))
    return record


def place_section(docs: Path) -> None:
    """First time: the sweep's markers go right after the connector table's section."""
    if not docs.is_file():
        return
    text = docs.read_text(encoding="utf-8")
    after = f"<!-- {ablation.NAME}:end -->"
    if f"<!-- {NAME}:start -->" in text or after not in text:
        return
    markers = f"<!-- {NAME}:start -->\n<!-- {NAME}:end -->"
    docs.write_text(text.replace(after, f"{after}\n\n{markers}", 1), encoding="utf-8")


def render(record: dict[str, Any], plot_path: Path | None) -> str:
    results, config = record["results"], record["config"]
    rows = results["rows"]
    table = common.markdown_table(
        [
            "variant",
            "setting",
            "visual tokens",
            "image size",
            "stage 2 trained params",
            "stage 2 samples/s",
            "test acc",
            "blind acc",
        ],
        [
            [
                f"`{row['variant']}`",
                f"`{row['option']}={row['value']}`",
                row["image_tokens"],
                f"{row['image_size']} px",
                f"{row['stage2_trained_parameters']:,}",
                f"{row['samples_per_s']:.1f}",
                f"{row['accuracy']:.3f}",
                f"{row['blind_accuracy']:.3f}",
            ]
            for row in rows
        ],
    )
    chosen = results.get("best_two") or []
    why = (
        "The two connectors swept are those with the highest test accuracy in the connector "
        "table above ("
        + ", ".join(f"`{c['connector']}` {c['accuracy']:.3f}" for c in chosen)
        + f", against a blind {chosen[0]['blind']:.3f}): every connector is at or below the "
        "blind baseline there, so this is the highest at that budget, not a proven best"
        if chosen
        else "The connector table's results were not found, so no best two were read"
    )
    above = [row["variant"] for row in rows if row["accuracy"] > row["blind_accuracy"] + 0.02]
    verdict = (
        "Above the blind baseline by more than 2 points: " + ", ".join(f"`{v}`" for v in above)
        if above
        else "No variant beats the blind baseline by more than 2 points, so at this budget the "
        "sweep shows what more or fewer visual tokens cost (samples/s), not what they buy"
    )
    reused = (
        ", reused from the connector table's run" if results.get("shared_stage0_reused") else ""
    )
    load = f"{results['load_average']} before, {results.get('load_average_after')} after"
    plot_md = (
        f"\n\n![accuracy by visual tokens]({ablation._relative(plot_path)})" if plot_path else ""
    )
    return (
        f"### Modality interfaces: visual tokens and resolution (sweep)\n\n{table}\n\n"
        f"{why}. `patches` is swept over image size: the world is drawn at "
        "64 px and the processor resizes it to the connector's `image_size`, so with 8 px "
        "patches its token count follows the resolution. The encoder connectors keep the "
        "shared stage 0 encoder's input size: another size would need another stage 0, so "
        f"only their token count is swept. {verdict}. Variants ran one after another on a "
        f"shared machine (1-min load average {load}), so samples/s mixes cost with load."
        f"{plot_md}\n\n"
        f"*{common.caption(record)} Recipe `{config['recipe']}` with "
        f"{', '.join(f'`{o}`' for o in config['overrides'])}; stage 0 shared "
        f"({results['shared_stage0_wall_s']:.0f} s{reused}); {config['steps']} steps each of "
        f"stage 1 and stage 2 per variant; {rows[0]['num_questions']} test questions; "
        f"{len(rows)} of {len(config['sweep'])} variants done.*"
    )


def plot(record: dict[str, Any], path: Path) -> None:
    """Test accuracy against visual tokens, one line per connector, blind as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["results"]["rows"]
    figure, axes = plt.subplots(figsize=(6, 3.6))
    for connector in dict.fromkeys(row["connector"] for row in rows):
        mine = sorted((r for r in rows if r["connector"] == connector), key=lambda r: r["value"])
        axes.plot(
            [r["image_tokens"] for r in mine], [r["accuracy"] for r in mine], "o-", label=connector
        )
    axes.axhline(rows[0]["blind_accuracy"], color="black", linestyle="--", label="blind baseline")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("visual tokens per image")
    axes.set_ylabel("world-vqa test accuracy")
    axes.set_ylim(0, 1)
    axes.legend(loc="upper right")
    axes.set_title(f"{record['config']['steps']} steps per stage, shared stage 0")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(config: ablation.AblationConfig, args: argparse.Namespace) -> dict[str, Any]:
    record = run(config, args)
    print(render(record, args.plot))
    return record
