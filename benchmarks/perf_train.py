"""Training throughput: ocelli's `train()` loop against transformers' Llava in a plain loop.

Both sides train the same model (the Llava one is exported from the ocelli one, so the
weights and the logits match) on the same synthetic batches: random pixels and token ids
with one image's placeholder run, the loss on the text positions only. A step is
forward, backward, gradient clipping to 1.0 and AdamW on every parameter, on both sides
(ocelli's `train()` steps AdamW on its fused kernel, the same update; the plain loop uses
torch's default AdamW, as a textbook loop does).
The two alternate in rounds (each round: warm-up steps, then timed steps), so a machine
shared with other work slows both alike. A step's time runs from the end of one step to
the end of the next (data, forward, backward, optimizer and the loop's bookkeeping);
samples/s is the batch size over the median step time of all rounds, which a burst of
other work on the machine moves less than the mean does (the mean is kept in the JSON).

MFU (model FLOPs utilisation) divides the model FLOP/s by the machine's dense fp32
matmul peak, measured in the same run at the same thread count (see `flops_per_sample`).

    python benchmarks/perf_train.py                      # default config, every core
    python benchmarks/perf_train.py --threads 1 --set batch_size=8 --no-docs
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as common
import torch
from _common import ModelSpec, SyntheticSamples
from torch.utils.data import DataLoader

from ocelli.errors import ConfigError

NAME = "perf_train"


@dataclass
class TrainBenchConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    batch_size: int = 16
    num_text_tokens: int = 96  # per sample, beside the image tokens
    initial_warmup_steps: int = 2  # per side, once before the rounds, not timed
    warmup_steps: int = 1  # per round and side, not timed
    measured_steps: int = 3  # per round and side
    rounds: int = 6  # even, so each side goes first equally often
    lr: float = 1e-4
    max_grad_norm: float = 1.0
    matmul_size: int = 2048  # side of the square matmul that measures the peak

    def __post_init__(self) -> None:
        # A timed step runs from the end of the step before it, so a round needs one
        # untimed step first.
        if self.warmup_steps < 1 or self.measured_steps < 1 or self.rounds < 1:
            raise ConfigError(
                f"warmup_steps, measured_steps and rounds must each be >= 1; got "
                f"{self.warmup_steps}, {self.measured_steps} and {self.rounds}"
            )


def ocelli_steps(
    model: torch.nn.Module,
    dataset: SyntheticSamples,
    config: TrainBenchConfig,
    num_steps: int,
    work_dir: Path,
) -> dict[str, Any]:
    """One call of ocelli's `train()` for `num_steps`; "stamps" are the step ends."""
    from ocelli.train import TrainConfig, train

    stamps: list[float] = []
    threads: set[int] = set()

    def on_step(step: int, stats: dict[str, float]) -> None:
        stamps.append(time.perf_counter())
        threads.add(torch.get_num_threads())

    train_config = TrainConfig(
        lr=config.lr,
        schedule="constant",
        max_steps=num_steps,
        batch_size=config.batch_size,
        max_grad_norm=config.max_grad_norm,
        log_every=num_steps,
        seed=config.model.seed,
    )
    with tempfile.TemporaryDirectory(dir=work_dir) as out_dir:
        result = train(
            model,
            dataset,
            common.collate,
            train_config,
            out_dir,
            callbacks=[on_step],
            description="ocelli",
        )
    return {
        "stamps": stamps,
        # train()'s own figure: every step, warm-up included, and the final checkpoint save
        "train_result_samples_per_s": result.samples_per_s,
        "final_loss": result.final_loss,
        "threads_seen": sorted(threads),
    }


def llava_steps(
    model: torch.nn.Module, dataset: SyntheticSamples, config: TrainBenchConfig, num_steps: int
) -> dict[str, Any]:
    """The textbook PyTorch loop on transformers' LlavaForConditionalGeneration for
    `num_steps`; "stamps" are the step ends."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=0.0)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=common.collate,
        generator=torch.Generator().manual_seed(config.model.seed),
    )
    model.train()
    stamps, loss = [], None
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss = loss.item()  # what a loop logs; also where the step's work is waited for
        stamps.append(time.perf_counter())
        if len(stamps) == num_steps:
            break
    return {
        "stamps": stamps,
        "final_loss": loss,
    }


def flops_per_sample(model: torch.nn.Module, sequence_length: int) -> dict[str, float]:
    """Training FLOPs of one sample: 6 x parameters on the loss's path x tokens they see.

        6 * (N_vision * num_patches + N_connector * num_image_tokens + N_lm * sequence_length)

    N_vision counts the patch embedding and the encoder layers up to the feature layer
    (layers after it, the post-norm and any pooling head do not reach the loss);
    N_lm counts the LM's layers, final norm and output head, not its input embedding
    table (a lookup). 6 = 2 (multiply-add) x 3 (forward, then two backward matmuls).
    Attention scores (QK^T and AV, 12 * layers * tokens^2 * width) are reported apart and
    left out of MFU, as is usual.
    """
    config = model.config
    vision = config.vision_config
    num_layers_used = config.vision_feature_layer % (vision.num_hidden_layers + 1)
    num_patches = (vision.image_size // vision.patch_size) ** 2
    counts = {"vision": 0, "connector": 0, "language_model": 0}
    # remove_duplicate=False so a head tied to the input embeddings is still counted
    for name, parameter in model.named_parameters(remove_duplicate=False):
        part = name.split(".", 1)[0]
        if part == "vision_tower":
            layer = re.search(r"encoder\.layers\.(\d+)\.", name)
            on_path = (
                int(layer.group(1)) < num_layers_used
                if layer
                else "patch_embedding" in name or "pre_layrnorm" in name
            )
            counts["vision"] += parameter.numel() if on_path else 0
        elif part == "connector":
            counts["connector"] += parameter.numel()
        elif part == "language_model" and "embed_tokens" not in name:
            counts["language_model"] += parameter.numel()
    text = config.text_config
    matmul = 6 * (
        counts["vision"] * num_patches
        + counts["connector"] * config.num_image_tokens
        + counts["language_model"] * sequence_length
    )
    attention = 12 * (
        num_layers_used * num_patches**2 * vision.hidden_size
        + text.num_hidden_layers * sequence_length**2 * text.hidden_size
    )
    return {
        "flops_per_sample": float(matmul),
        "attention_flops_per_sample": float(attention),
        "path_parameters": counts,
        "num_patches": num_patches,
        "sequence_length": sequence_length,
    }


def run(config: TrainBenchConfig, threads: int | None) -> dict[str, Any]:
    threads = common.set_threads(threads)
    load_before = common.load_average()
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = Path(scratch)
        ocelli_model, llava_model = common.build_model_pair(config.model, work_dir)
        num_image_tokens = ocelli_model.config.num_image_tokens
        sequence_length = config.num_text_tokens + num_image_tokens
        round_steps = config.warmup_steps + config.measured_steps
        dataset = SyntheticSamples(
            config.batch_size * max(round_steps, config.initial_warmup_steps),
            config.num_text_tokens,
            num_image_tokens,
            ocelli_model.config.vision_config.image_size,
            config.model,
            seed=config.model.seed,
        )

        def steps(side: str, num_steps: int) -> dict[str, Any]:
            if side == "ocelli":
                return ocelli_steps(ocelli_model, dataset, config, num_steps, work_dir)
            return llava_steps(llava_model, dataset, config, num_steps)

        peaks = [common.matmul_peak_flops(config.matmul_size)]
        if config.initial_warmup_steps:  # first steps allocate and pick kernels
            steps("ocelli", config.initial_warmup_steps)
            steps("hf", config.initial_warmup_steps)
        rounds: list[dict[str, Any]] = []
        for index in range(config.rounds):
            # Alternate who goes first: a trend in the machine's load, or the cost of
            # following the other model in the caches, then favours neither side.
            order = ["ocelli", "hf"] if index % 2 == 0 else ["hf", "ocelli"]
            measured = {side: steps(side, round_steps) for side in order}
            for figures in measured.values():
                figures["step_s"] = common.step_durations(figures["stamps"], config.warmup_steps)
            rounds.append(measured)
        peaks.append(common.matmul_peak_flops(config.matmul_size))
        flops = flops_per_sample(ocelli_model, sequence_length)
    return summarize(
        rounds, flops, max(peaks), threads, load_before, sequence_length, config.batch_size
    )


def summarize(
    rounds: list[dict[str, Any]],
    flops: dict[str, Any],
    peak_flops: float,
    threads: int,
    load_before: float | None,
    sequence_length: int,
    batch_size: int,
) -> dict[str, Any]:
    sides = {}
    for side in ("ocelli", "hf"):
        steps = [seconds for r in rounds for seconds in r[side]["step_s"]]
        samples_per_s = batch_size / common.median(steps)
        sides[side] = {
            "samples_per_s": samples_per_s,
            "tokens_per_s": samples_per_s * sequence_length,
            "mfu": samples_per_s * flops["flops_per_sample"] / peak_flops,
            "mean_samples_per_s": batch_size * len(steps) / sum(steps),
            "best_samples_per_s": batch_size / min(steps),
            "samples_per_s_by_round": [
                batch_size / common.median(r[side]["step_s"]) for r in rounds
            ],
            "step_s": steps,
        }
    sides["ocelli"]["train_result_samples_per_s_by_round"] = [
        r["ocelli"]["train_result_samples_per_s"] for r in rounds
    ]
    ocelli, hf = sides["ocelli"], sides["hf"]
    return {
        "ocelli": ocelli,
        "hf": hf,
        "ratio": ocelli["samples_per_s"] / hf["samples_per_s"],
        "ratio_of_means": ocelli["mean_samples_per_s"] / hf["mean_samples_per_s"],
        "ratio_of_best": ocelli["best_samples_per_s"] / hf["best_samples_per_s"],
        "ratio_by_round": [
            o / h
            for o, h in zip(
                ocelli["samples_per_s_by_round"], hf["samples_per_s_by_round"], strict=True
            )
        ],
        "peak_matmul_flops": peak_flops,
        **flops,
        "threads": threads,
        "ocelli_threads_seen": sorted({t for r in rounds for t in r["ocelli"]["threads_seen"]}),
        "load_average": load_before,
        "load_average_after": common.load_average(),
        # ocelli's progress display is a live bar on a terminal, plain lines otherwise
        "stdout_is_terminal": sys.stdout.isatty(),
        "final_loss": {side: rounds[-1][side]["final_loss"] for side in ("ocelli", "hf")},
    }


def render(record: dict[str, Any]) -> str:
    results, config = record["results"], record["config"]
    model = config["model"]
    rows = []
    for side, label in (
        ("ocelli", "ocelli `train()`, OcelliForConditionalGeneration"),
        ("hf", "plain PyTorch loop, transformers LlavaForConditionalGeneration"),
    ):
        figures = results[side]
        rows.append(
            [
                label,
                f"{figures['samples_per_s']:.2f}",
                f"{figures['tokens_per_s']:.0f}",
                f"{100 * figures['mfu']:.1f}%",
                f"{figures['mean_samples_per_s']:.2f}",
                f"{figures['best_samples_per_s']:.2f}",
            ]
        )
    table = common.markdown_table(
        ["training loop", "samples/s", "tokens/s", "MFU", "mean samples/s", "best-step samples/s"],
        rows,
    )
    parts = results["path_parameters"]
    return "\n".join(
        [
            "### Training throughput",
            "",
            table,
            "",
            f"**ocelli / HF: {results['ratio']:.2f}** (the bar is >= 1.00); of the means "
            f"{results['ratio_of_means']:.2f}, of the best steps {results['ratio_of_best']:.2f}, "
            "by round " + ", ".join(f"{ratio:.2f}" for ratio in results["ratio_by_round"]) + ".",
            "",
            f"*{common.caption(record)} Model: {model['vision']} encoder "
            f"({results['num_patches']} image tokens), mlp connector, {model['language_model']} LM; "
            f"batch {config['batch_size']}, {config['num_text_tokens']} text + "
            f"{results['num_patches']} image tokens per sample; {config['rounds']} rounds of "
            f"{config['warmup_steps']} warm-up + {config['measured_steps']} timed steps per side "
            f"({config['initial_warmup_steps']} more warm-up steps before the first), "
            "alternating; samples/s = batch / median step time.*",
            "",
            f"MFU = samples/s x {results['flops_per_sample'] / 1e9:.2f} GFLOP per sample / "
            f"{results['peak_matmul_flops'] / 1e9:.1f} GFLOP/s (best fp32 "
            f"{config['matmul_size']}x{config['matmul_size']} matmul in the same run). "
            "FLOPs per sample = 6 x (N_vision x patches + N_connector x image tokens + N_lm x "
            f"sequence tokens) with N_vision = {parts['vision']:,}, N_connector = "
            f"{parts['connector']:,}, N_lm = {parts['language_model']:,} (the parameters on the "
            "loss's path, embedding tables left out); attention scores add "
            f"{results['attention_flops_per_sample'] / 1e9:.2f} GFLOP per sample, not counted.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return common.run_benchmark(NAME, TrainBenchConfig, __doc__.split("\n\n")[0], run, render, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
