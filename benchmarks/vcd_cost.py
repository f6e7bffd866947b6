"""The cost of visual contrastive decoding against greedy decoding, measured in one run.

One model (random weights unless `checkpoint` names a trained ocelli model directory)
gets the same prompts (random text around one image's placeholders, random pixels)
with plain greedy decoding and with VCD (`ocelli.generate.logits.vcd_generate`: the
original and the noised image in one batch of twice the size). Every call makes
exactly `max_new_tokens` tokens; calls alternate between the sides after a warm-up; the
ratio is VCD's median call time over greedy's. Two unbatched passes would cost 2x.

    python benchmarks/vcd_cost.py --docs docs/alignment.md
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _common as common
import torch
from quantize_cpu import build_model, make_prompts

from ocelli.generate.logits import VCDConfig, vcd_generate

NAME = "vcd_cost"


@dataclass
class VCDBenchConfig(common.GenerationBenchConfig):
    checkpoint: str | None = None  # a trained ocelli model directory replaces `model`
    alpha: float = 1.0
    beta: float = 0.1
    noise_step: int = 500


def timed_call(model: Any, prompts: dict[str, Any], config: VCDBenchConfig, vcd: bool) -> float:
    kwargs = {
        "max_new_tokens": config.max_new_tokens,
        "min_new_tokens": config.max_new_tokens,
        "do_sample": False,
        "pad_token_id": model.config.pad_token_id or 0,
    }
    settings = VCDConfig(alpha=config.alpha, beta=config.beta, noise_step=config.noise_step)
    began = time.perf_counter()
    with torch.inference_mode():
        if vcd:
            vcd_generate(model, dict(prompts), settings, **kwargs)
        else:
            model.generate(**prompts, **kwargs)
    return time.perf_counter() - began


def measure_batch(model: Any, batch_size: int, config: VCDBenchConfig) -> dict[str, Any]:
    prompts = make_prompts(model, batch_size, config)
    sides = {"greedy": False, "vcd": True}
    for vcd in sides.values():
        for _ in range(config.warmup_calls):
            timed_call(model, prompts, config, vcd)
    call_s: dict[str, list[float]] = {side: [] for side in sides}
    for index in range(config.rounds):
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        for side in order:
            call_s[side].append(timed_call(model, prompts, config, sides[side]))
    medians = {side: common.median(seconds) for side, seconds in call_s.items()}
    new_tokens = batch_size * config.max_new_tokens
    return {
        "batch_size": batch_size,
        "prompt_length": prompts["input_ids"].shape[1],
        "tokens_per_s": {side: new_tokens / seconds for side, seconds in medians.items()},
        "call_s": call_s,
        "ratio": medians["vcd"] / medians["greedy"],
    }


def run(config: VCDBenchConfig, threads: int | None) -> dict[str, Any]:
    threads = common.set_threads(threads)
    load_before = common.load_average()
    model = build_model(config)
    return {
        "by_batch_size": [measure_batch(model, size, config) for size in config.batch_sizes],
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": threads,
        "load_average": load_before,
        "load_average_after": common.load_average(),
    }


def render(record: dict[str, Any]) -> str:
    results, config = record["results"], record["config"]
    rows = [
        [
            entry["batch_size"],
            f"{entry['tokens_per_s']['greedy']:.1f}",
            f"{entry['tokens_per_s']['vcd']:.1f}",
            f"**{entry['ratio']:.2f}x**",
        ]
        for entry in results["by_batch_size"]
    ]
    header = ["batch", "greedy tokens/s", "VCD tokens/s", "VCD time / greedy time"]
    weights = config["checkpoint"] or "random weights"
    return "\n".join(
        [
            "### Cost of visual contrastive decoding",
            "",
            common.markdown_table(header, rows),
            "",
            f"*{common.caption(record)} Model of {results['parameters'] / 1e6:.1f}M parameters "
            f"({weights}); {config['max_new_tokens']} new tokens per sequence, alpha "
            f"{config['alpha']}, beta {config['beta']}, noise step {config['noise_step']}; "
            f"{config['rounds']} alternating timed calls per side; tokens/s = new tokens / "
            "median call time, prefill included. Produced by `benchmarks/vcd_cost.py`.*",
        ]
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return common.run_benchmark(NAME, VCDBenchConfig, __doc__.split("\n\n")[0], run, render, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
