"""Generation throughput: ocelli's `generate` against transformers' Llava, greedy decoding.

Both sides hold the same weights (the Llava model is exported from the ocelli one) and
get the same prompts: random text ids around one image's placeholder run, with random
pixels. Every sequence gets exactly `max_new_tokens` new tokens (min_new_tokens is set
to the same number), so both sides do the same work. Calls alternate between the sides
in rounds after a warm-up; tokens/s is new tokens over the median call time, prefill
(image encoding and the prompt) included. The outputs are compared token by token.

    python benchmarks/perf_generate.py                  # batch 1 and 16, every core
    python benchmarks/perf_generate.py --set batch_sizes=[1,4] --no-docs
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as common
import torch

NAME = "perf_generate"


@dataclass
class GenerateBenchConfig(common.GenerationBenchConfig):
    batch_sizes: list[int] = field(default_factory=lambda: [1, 16])
    rounds: int = 10  # even, so each side leads equally


def make_prompts(
    batch_size: int, model: torch.nn.Module, config: GenerateBenchConfig
) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(config.model.seed + batch_size)
    input_ids = common.synthetic_ids(
        batch_size,
        config.num_prompt_text_tokens,
        model.config.num_image_tokens,
        config.model,
        generator,
    )
    size = model.config.vision_config.image_size
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(batch_size, 3, size, size, generator=generator),
    }


def generate(
    model: torch.nn.Module, prompts: dict[str, torch.Tensor], config: GenerateBenchConfig
) -> tuple[torch.Tensor, float]:
    """(new token ids, seconds) of one greedy call."""
    began = time.perf_counter()
    with torch.inference_mode():
        sequences = model.generate(
            **prompts,
            max_new_tokens=config.max_new_tokens,
            min_new_tokens=config.max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=config.model.pad_token_id,
        )
    seconds = time.perf_counter() - began
    new_tokens = sequences[:, prompts["input_ids"].shape[1] :]
    if new_tokens.shape[1] != config.max_new_tokens:
        raise RuntimeError(
            f"{type(model).__name__} made {new_tokens.shape[1]} new tokens, not "
            f"{config.max_new_tokens}; the comparison needs equal lengths"
        )
    return new_tokens, seconds


def measure_batch(
    models: dict[str, torch.nn.Module], batch_size: int, config: GenerateBenchConfig
) -> dict[str, Any]:
    prompts = make_prompts(batch_size, models["ocelli"], config)
    outputs = {}
    for side, model in models.items():
        for _ in range(config.warmup_calls):
            outputs[side], _ = generate(model, prompts, config)
    call_s: dict[str, list[float]] = {side: [] for side in models}
    for index in range(config.rounds):
        # Alternate who goes first, so a trend in the machine's load favours neither.
        order = list(models) if index % 2 == 0 else list(reversed(models))
        for side in order:
            _, seconds = generate(models[side], prompts, config)
            call_s[side].append(seconds)
    new_tokens = batch_size * config.max_new_tokens
    sides = {
        side: {
            "tokens_per_s": new_tokens / common.median(seconds),
            "mean_tokens_per_s": new_tokens * len(seconds) / sum(seconds),
            "best_tokens_per_s": new_tokens / min(seconds),
            "call_s": seconds,
        }
        for side, seconds in call_s.items()
    }
    return {
        "batch_size": batch_size,
        "new_tokens_per_sequence": config.max_new_tokens,
        "prompt_length": prompts["input_ids"].shape[1],
        **sides,
        "ratio": sides["ocelli"]["tokens_per_s"] / sides["hf"]["tokens_per_s"],
        "ratio_of_best": sides["ocelli"]["best_tokens_per_s"] / sides["hf"]["best_tokens_per_s"],
        "same_tokens": bool(torch.equal(outputs["ocelli"], outputs["hf"])),
    }


def run(config: GenerateBenchConfig, threads: int | None) -> dict[str, Any]:
    threads = common.set_threads(threads)
    load_before = common.load_average()
    with tempfile.TemporaryDirectory() as scratch:
        ocelli_model, llava_model = common.build_model_pair(config.model, Path(scratch))
        models = {"ocelli": ocelli_model, "hf": llava_model}
        by_batch = [measure_batch(models, size, config) for size in config.batch_sizes]
    return {
        "by_batch_size": by_batch,
        "threads": threads,
        "load_average": load_before,
        "load_average_after": common.load_average(),
    }


def render(record: dict[str, Any]) -> str:
    results, config = record["results"], record["config"]
    model = config["model"]
    rows = [
        [
            entry["batch_size"],
            f"{entry['ocelli']['tokens_per_s']:.0f}",
            f"{entry['hf']['tokens_per_s']:.0f}",
            f"**{entry['ratio']:.2f}**",
            f"{entry['ratio_of_best']:.2f}",
            "yes" if entry["same_tokens"] else "no",
        ]
        for entry in results["by_batch_size"]
    ]
    table = common.markdown_table(
        [
            "batch",
            "ocelli tokens/s",
            "HF Llava tokens/s",
            "ocelli / HF",
            "ocelli / HF, best calls",
            "same tokens",
        ],
        rows,
    )
    prompt_length = results["by_batch_size"][0]["prompt_length"]
    return "\n".join(
        [
            "### Generation throughput",
            "",
            table,
            "",
            f"*{common.caption(record)} Model: {model['vision']} encoder, mlp connector, "
            f"{model['language_model']} LM; prompts of {prompt_length} tokens (one image's "
            f"placeholders and {config['num_prompt_text_tokens']} text tokens), "
            f"{config['max_new_tokens']} new tokens per sequence, greedy, KV cache; "
            f"{config['rounds']} alternating timed calls per side after "
            f"{config['warmup_calls']} warm-up call(s); tokens/s = new tokens / median call "
            "time, prefill included. ocelli: `OcelliForConditionalGeneration.generate`; HF: "
            "`LlavaForConditionalGeneration.generate` on the `export_llava_hf` export.*",
        ]
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return common.run_benchmark(
        NAME, GenerateBenchConfig, __doc__.split("\n\n")[0], run, render, argv
    )


if __name__ == "__main__":
    main(sys.argv[1:])
