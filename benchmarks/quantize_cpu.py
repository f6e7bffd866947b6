"""int8 dynamic quantization on the CPU: greedy generation speed and agreement, fp32 against
`quantize_for_cpu`, measured in the same run.

One model (random weights unless `checkpoint` names a trained ocelli model directory)
is quantized into a copy; both get the same prompts (random text around one image's
placeholders, random pixels). Every call makes exactly `max_new_tokens` tokens; calls
alternate between the sides after a warm-up, and tokens/s is new tokens over the median
call time, prefill included. Agreement: the fraction of generated tokens equal to
fp32's, and the top-1 agreement and largest logit difference when both read the same
(fp32-generated) sequences.

    python benchmarks/quantize_cpu.py --docs docs/model.md
    python benchmarks/quantize_cpu.py --set checkpoint=runs/quickstart/instruct/final --no-docs
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import _common as common
import torch
from _common import ModelSpec

from ocelli.model import OcelliForConditionalGeneration
from ocelli.model.quantize import quantize_for_cpu

NAME = "quantize_cpu"


def _default_model() -> ModelSpec:
    # wide enough that the matmuls, which int8 speeds up, dominate the time
    return ModelSpec(
        language_model_overrides={
            "hidden_size": 768,
            "intermediate_size": 2048,
            "num_hidden_layers": 6,
            "num_attention_heads": 12,
        }
    )


@dataclass
class QuantizeBenchConfig(common.GenerationBenchConfig):
    model: ModelSpec = field(default_factory=_default_model)
    checkpoint: str | None = None  # a trained ocelli model directory replaces `model`
    max_new_tokens: int = 16


def build_model(config: QuantizeBenchConfig) -> OcelliForConditionalGeneration:
    if config.checkpoint:
        return OcelliForConditionalGeneration.from_pretrained(config.checkpoint).eval()
    spec = config.model
    torch.manual_seed(spec.seed)
    return OcelliForConditionalGeneration.from_components(
        spec.vision,
        spec.language_model,
        image_token_id=spec.image_token_id,
        vocab_size=spec.vocab_size,
        pad_token_id=spec.pad_token_id,
        vision_overrides=spec.vision_overrides,
        language_model_overrides=spec.language_model_overrides,
        vision_feature_layer=spec.vision_feature_layer,
    ).eval()


def make_prompts(model: Any, batch_size: int, config: QuantizeBenchConfig) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(config.model.seed + batch_size)
    spec = ModelSpec(
        vocab_size=model.config.text_config.vocab_size,
        image_token_id=model.config.image_token_id,
        pad_token_id=model.config.pad_token_id or 0,
    )
    input_ids = common.synthetic_ids(
        batch_size, config.num_prompt_text_tokens, model.config.num_image_tokens, spec, generator
    )
    size = model.config.vision_config.image_size
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(batch_size, 3, size, size, generator=generator),
    }


def generate(model: Any, prompts: dict[str, Any], config: QuantizeBenchConfig) -> tuple[Any, float]:
    began = time.perf_counter()
    with torch.inference_mode():
        sequences = model.generate(
            **prompts,
            max_new_tokens=config.max_new_tokens,
            min_new_tokens=config.max_new_tokens,
            do_sample=False,
            pad_token_id=model.config.pad_token_id or 0,
        )
    return sequences, time.perf_counter() - began


def agreement(models: dict[str, Any], prompts: dict[str, Any], sequences: dict[str, Any]) -> dict:
    """How far int8 strays from fp32: on its own greedy tokens, and reading fp32's."""
    start = prompts["input_ids"].shape[1]
    same_tokens = sequences["int8"][:, start:] == sequences["fp32"][:, start:]
    forced = {"input_ids": sequences["fp32"], "pixel_values": prompts["pixel_values"]}
    with torch.inference_mode():
        logits = {side: model(**forced).logits[:, start - 1 : -1] for side, model in models.items()}
    return {
        "generated_token_agreement": same_tokens.float().mean().item(),
        "identical_sequences": int(same_tokens.all(dim=1).sum()),
        "teacher_forced_top1_agreement": (
            (logits["int8"].argmax(-1) == logits["fp32"].argmax(-1)).float().mean().item()
        ),
        "max_abs_logit_difference": (logits["int8"] - logits["fp32"]).abs().max().item(),
        "fp32_logit_std": logits["fp32"].std().item(),
    }


def measure_batch(models: dict[str, Any], batch_size: int, config: QuantizeBenchConfig) -> dict:
    prompts = make_prompts(models["fp32"], batch_size, config)
    sequences = {}
    for side, model in models.items():
        for _ in range(config.warmup_calls):
            sequences[side], _ = generate(model, prompts, config)
    call_s: dict[str, list[float]] = {side: [] for side in models}
    for index in range(config.rounds):
        order = list(models) if index % 2 == 0 else list(reversed(models))
        for side in order:
            call_s[side].append(generate(models[side], prompts, config)[1])
    new_tokens = batch_size * config.max_new_tokens
    speed = {side: new_tokens / common.median(seconds) for side, seconds in call_s.items()}
    return {
        "batch_size": batch_size,
        "prompt_length": prompts["input_ids"].shape[1],
        "tokens_per_s": speed,
        "call_s": call_s,
        "speedup": speed["int8"] / speed["fp32"],
        **agreement(models, prompts, sequences),
    }


def run(config: QuantizeBenchConfig, threads: int | None) -> dict[str, Any]:
    threads = common.set_threads(threads)
    load_before = common.load_average()
    model = build_model(config)
    models = {"fp32": model, "int8": quantize_for_cpu(model)}
    parameters = sum(p.numel() for p in model.language_model.parameters())
    return {
        "by_batch_size": [measure_batch(models, size, config) for size in config.batch_sizes],
        "language_model_parameters": parameters,
        "quantized_engine": torch.backends.quantized.engine,
        "threads": threads,
        "load_average": load_before,
        "load_average_after": common.load_average(),
    }


def render(record: dict[str, Any]) -> str:
    results, config = record["results"], record["config"]
    rows = [
        [
            entry["batch_size"],
            f"{entry['tokens_per_s']['fp32']:.1f}",
            f"{entry['tokens_per_s']['int8']:.1f}",
            f"**{entry['speedup']:.2f}**",
            f"{entry['generated_token_agreement']:.1%}",
            f"{entry['teacher_forced_top1_agreement']:.1%}",
            f"{entry['max_abs_logit_difference']:.3f} (std {entry['fp32_logit_std']:.3f})",
        ]
        for entry in results["by_batch_size"]
    ]
    header = [
        "batch",
        "fp32 tokens/s",
        "int8 tokens/s",
        "int8 / fp32",
        "generated tokens equal",
        "top-1 agreement (teacher-forced)",
        "max logit difference",
    ]
    model = config["model"]
    weights = (
        f"trained checkpoint {config['checkpoint']}"
        if config["checkpoint"]
        else f"{model['language_model']} with {model['language_model_overrides']}, random "
        "weights (near-flat logits: agreement is a floor)"
    )
    return "\n".join(
        [
            "### int8 dynamic quantization on the CPU",
            "",
            common.markdown_table(header, rows),
            "",
            f"*{common.caption(record)} LM of {results['language_model_parameters'] / 1e6:.1f}M "
            f"parameters, {weights}; engine "
            f"{results['quantized_engine']}; {config['max_new_tokens']} new tokens per "
            f"sequence, greedy, {config['rounds']} alternating timed calls per side; tokens/s = "
            "new tokens / median call time, prefill included. Produced by "
            "`benchmarks/quantize_cpu.py`.*",
        ]
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return common.run_benchmark(
        NAME, QuantizeBenchConfig, __doc__.split("\n\n")[0], run, render, argv
    )


if __name__ == "__main__":
    main(sys.argv[1:])
