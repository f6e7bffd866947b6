"""Training throughput with sequence packing: ocelli's `train()` with `packing` against
transformers' Llava in a plain loop over padded batches, same model, data and batches.

Conversations differ in length, so a padded batch computes on padding up to its longest
sample; ocelli packs the same samples end to end (ocelli.data.packing: position ids
restart per sample, attention stays inside each sample). Its sdpa LM then attends to
each sample on its own, without a mask (ocelli.model.packed_attention), so the samples
of a batch go in one row with no padding (`pack_max_tokens` only bounds rows for
attention kernels that need transformers' dense block-diagonal mask), and the LM head
and loss, and most of the last decoder layer (ocelli.model.last_layer), run only at
positions with a label. Three sides, all on the same samples per step in the same order
(ocelli's StepSampler): ocelli packed, ocelli padded (what packing alone buys) and the
Llava loop (forward, backward, clipping to 1.0, AdamW; SDPA on every side; fp32
everywhere). The loop uses torch's default AdamW, as a textbook loop does; ocelli's
`train()` uses the fused AdamW kernel (the same update). The sides rotate in rounds
(warm-up step, then timed steps), so a machine shared with other work slows each alike;
samples/s is the batch size over the median step time.

Memory per sample: peak resident memory during a side's steps (Linux VmHWM, reset
before the side runs) minus the resident memory before it, after freed memory went back
to the OS, divided by the batch size. It covers activations, gradients and the
optimizer state (the same on every side), not the model weights.

With `--set compile=true` ocelli's `train()` compiles its LM's decoder layers
(`train.compile`); the one-off compile time (from an empty inductor cache) falls in
each side's untimed first call, reported as `first_call_s`; the plain loop stays eager.

With `--set frozen_vision=true` every side trains as stage 2 does, the vision tower
frozen: ocelli's `train()` then reads each image's tower output computed once before
training (what `ocelli train` does in stages 1 and 2; that one-off time is reported),
while the plain loop runs the frozen tower at every step, as a textbook loop does.

    python benchmarks/perf_packing.py --threads 2
    python benchmarks/perf_packing.py --threads 1 --set frozen_vision=true \
        --out benchmarks/results/perf_packing_frozen.json
    python benchmarks/perf_packing.py --threads 1 --set batch_size=8 --no-docs
    python benchmarks/perf_packing.py --threads 1 --set compile=true --no-docs \
        --out benchmarks/results/perf_packing_compiled.json
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as common
import torch
from _common import IGNORE_INDEX, ModelSpec
from torch.utils.data import Dataset

from ocelli.errors import ConfigError

NAME = "perf_packing"
SIDES = ("ocelli_packed", "ocelli_padded", "hf")
LABELS = {
    "ocelli_packed": "ocelli `train()`, packing + per-sample SDPA",
    "ocelli_padded": "ocelli `train()`, padded batches + SDPA",
    "hf": "plain loop, transformers LlavaForConditionalGeneration, padded + SDPA",
}


@dataclass
class PackingBenchConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    batch_size: int = 16
    min_text_tokens: int = 16  # per sample, beside the image tokens; uniform in [min, max]
    max_text_tokens: int = 192
    pack_max_tokens: int = 512
    warmup_steps: int = 1  # per round and side, not timed
    measured_steps: int = 3  # per round and side
    rounds: int = 3  # each side goes first once in three rounds
    memory_steps: int = 2  # steps of the separate memory measurement, per side
    lr: float = 1e-4
    max_grad_norm: float = 1.0
    frozen_vision: bool = False  # stage 2's set-up (see the module docstring)
    compile: bool = False  # ocelli's train.compile (see the module docstring)

    def __post_init__(self) -> None:
        if not 1 <= self.min_text_tokens <= self.max_text_tokens:
            raise ConfigError(
                f"need 1 <= min_text_tokens <= max_text_tokens, got {self.min_text_tokens} "
                f"and {self.max_text_tokens}"
            )
        if self.warmup_steps < 1 or self.measured_steps < 1 or self.rounds < 1:
            raise ConfigError("warmup_steps, measured_steps and rounds must each be >= 1")


class VariableLengthSamples(Dataset):
    """One image and a uniformly drawn number of text tokens per sample; loss on text."""

    def __init__(
        self, config: PackingBenchConfig, num_samples: int, num_image_tokens: int, image_size: int
    ) -> None:
        generator = torch.Generator().manual_seed(config.model.seed)
        lengths = torch.randint(
            config.min_text_tokens, config.max_text_tokens + 1, (num_samples,), generator=generator
        )
        spec = config.model
        self.items = []
        for length in lengths.tolist():
            ids = common.synthetic_ids(1, length, num_image_tokens, spec, generator)[0]
            self.items.append(
                {
                    "input_ids": ids,
                    "labels": ids.masked_fill(ids == spec.image_token_id, IGNORE_INDEX),
                    "pixel_values": torch.randn(1, 3, image_size, image_size, generator=generator),
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


# -- memory ----------------------------------------------------------------------


def _status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_memory() -> int | None:
    """Return freed memory to the OS, reset the peak; the resident KiB now (None: no /proc)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # else one side's freed heap hides the next's
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset VmHWM to VmRSS
    except OSError:
        return None
    return _status_kib("VmRSS")


def peak_memory_kib() -> int | None:
    return _status_kib("VmHWM")


# -- the sides -------------------------------------------------------------------


def ocelli_steps(
    model: torch.nn.Module,
    dataset: Dataset,
    config: PackingBenchConfig,
    num_steps: int,
    packing: bool,
    work_dir: Path,
) -> dict[str, Any]:
    """One call of ocelli's `train()`; "stamps" are the step ends, "peak_kib" the peak
    resident memory at the last step (before the final save)."""
    from ocelli.data import PadCollator
    from ocelli.train import TrainConfig, train

    stamps: list[float] = []
    peaks: list[int | None] = []

    def on_step(step: int, stats: dict[str, float]) -> None:
        stamps.append(time.perf_counter())
        peaks.append(peak_memory_kib())

    train_config = TrainConfig(
        lr=config.lr,
        schedule="constant",
        max_steps=num_steps,
        batch_size=config.batch_size,
        max_grad_norm=config.max_grad_norm,
        log_every=num_steps,
        seed=config.model.seed,
        packing=packing,
        pack_max_tokens=config.pack_max_tokens,
        tensorboard=False,
        compile=config.compile,
    )
    with tempfile.TemporaryDirectory(dir=work_dir) as out_dir:
        train(
            model,
            dataset,
            PadCollator(config.model.pad_token_id),
            train_config,
            out_dir,
            callbacks=[on_step],
            description="ocelli",
        )
    return {"stamps": stamps, "peak_kib": peaks[-1]}


def hf_steps(
    model: torch.nn.Module, dataset: Dataset, config: PackingBenchConfig, num_steps: int
) -> dict[str, Any]:
    """The textbook loop on LlavaForConditionalGeneration, padded batches of the samples
    ocelli's sampler gives its steps, in the same order."""
    from ocelli.data import PadCollator
    from ocelli.train.loop import StepSampler

    collate = PadCollator(config.model.pad_token_id)
    sampler = iter(StepSampler(len(dataset), config.batch_size, 1, 1, 0, config.model.seed))
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=0.0)
    model.train()
    stamps = []
    for _ in range(num_steps):
        batch = collate([dataset[i] for i in next(sampler)])
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    return {"stamps": stamps, "peak_kib": peak_memory_kib()}


def padding_figures(
    model: torch.nn.Module, dataset: Dataset, config: PackingBenchConfig, num_steps: int
) -> dict:
    """Tokens computed per real token, padded and packed as `train()` packs for `model`,
    over the first steps' batches."""
    from ocelli.data import PadCollator
    from ocelli.data.packing import packed_collation
    from ocelli.train.loop import StepSampler

    sampler = iter(StepSampler(len(dataset), config.batch_size, 1, 1, 0, config.model.seed))
    pad = PadCollator(config.model.pad_token_id)
    pack, _ = packed_collation(pad, config.pack_max_tokens, model)
    real = padded = packed = rows = 0
    for _ in range(num_steps):
        items = [dataset[i] for i in next(sampler)]
        real += sum(len(item["input_ids"]) for item in items)
        padded += pad(items)["input_ids"].numel()
        packed_ids = pack(items)["input_ids"]
        packed += packed_ids.numel()
        rows += len(packed_ids)
    return {
        "padded_tokens_per_real_token": padded / real,
        "packed_tokens_per_real_token": packed / real,
        "packed_rows_per_batch": rows / num_steps,
        "mean_sample_tokens": real / (num_steps * config.batch_size),
    }


def run(config: PackingBenchConfig, threads: int | None) -> dict[str, Any]:
    threads = common.set_threads(threads)
    load_before = common.load_average()
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = Path(scratch)
        if config.compile:  # an empty cache, so the first call pays the whole compile
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(work_dir / "inductor")
        ocelli_model, llava_model = common.build_model_pair(config.model, work_dir)
        round_steps = config.warmup_steps + config.measured_steps
        dataset = VariableLengthSamples(
            config,
            config.batch_size * max(round_steps, config.memory_steps),
            ocelli_model.config.num_image_tokens,
            ocelli_model.config.vision_config.image_size,
        )
        ocelli_data, precompute_s = dataset, None
        if config.frozen_vision:
            ocelli_data, precompute_s = freeze_vision(ocelli_model, llava_model, dataset)
        steps: dict[str, Callable[[int], dict[str, Any]]] = {
            "ocelli_packed": lambda n: ocelli_steps(
                ocelli_model, ocelli_data, config, n, True, work_dir
            ),
            "ocelli_padded": lambda n: ocelli_steps(
                ocelli_model, ocelli_data, config, n, False, work_dir
            ),
            "hf": lambda n: hf_steps(llava_model, dataset, config, n),
        }
        first_call_s = {}
        for side, step in steps.items():  # first steps pick kernels, compile, make buffers
            began = time.perf_counter()
            step(1)
            first_call_s[side] = time.perf_counter() - began
        memory = {}
        for side, step in steps.items():
            before = reset_peak_memory()
            peak = step(config.memory_steps)["peak_kib"]
            memory[side] = None if before is None or peak is None else (peak - before) * 1024
        rounds = []
        for index in range(config.rounds):
            order = SIDES[index % 3 :] + SIDES[: index % 3]  # rotate who goes first
            rounds.append(
                {
                    side: common.step_durations(
                        steps[side](round_steps)["stamps"], config.warmup_steps
                    )
                    for side in order
                }
            )
    padding = padding_figures(ocelli_model, dataset, config, round_steps)
    results = summarize(rounds, memory, padding, config, threads, load_before)
    results["vision_features_precompute_s"] = precompute_s
    results["first_call_s"] = first_call_s  # one step and train()'s set-up; compile included
    results["num_images"] = len(dataset)
    return results


@torch.no_grad()
def freeze_vision(
    ocelli_model: torch.nn.Module, llava_model: torch.nn.Module, dataset: Dataset
) -> tuple[list[dict[str, torch.Tensor]], float]:
    """Freeze both vision towers; ocelli's samples with the tower's output in place of
    the pixels, and the seconds that took (once per image, before training)."""
    ocelli_model.freeze(vision=True)
    for name, parameter in llava_model.named_parameters():
        if "vision_tower" in name:
            parameter.requires_grad_(False)
    began = time.perf_counter()
    ocelli_model.eval()
    samples = []
    for index in range(len(dataset)):
        item = dict(dataset[index])
        item["vision_features"] = ocelli_model.get_vision_features(item.pop("pixel_values"))
        samples.append(item)
    ocelli_model.train()
    return samples, time.perf_counter() - began


def summarize(
    rounds: list[dict[str, list[float]]],
    memory: dict[str, int | None],
    padding: dict[str, float],
    config: PackingBenchConfig,
    threads: int,
    load_before: float | None,
) -> dict[str, Any]:
    sides = {}
    for side in SIDES:
        durations = [seconds for r in rounds for seconds in r[side]]
        sides[side] = {
            "samples_per_s": config.batch_size / common.median(durations),
            "mean_samples_per_s": config.batch_size * len(durations) / sum(durations),
            "samples_per_s_by_round": [config.batch_size / common.median(r[side]) for r in rounds],
            "peak_memory_per_sample_bytes": (
                None if memory[side] is None else memory[side] / config.batch_size
            ),
            "step_s": durations,
        }
    hf = sides["hf"]["samples_per_s"]
    return {
        **sides,
        "ratio_packed_vs_hf": sides["ocelli_packed"]["samples_per_s"] / hf,
        "ratio_padded_vs_hf": sides["ocelli_padded"]["samples_per_s"] / hf,
        "ratio_packed_vs_padded": sides["ocelli_packed"]["samples_per_s"]
        / sides["ocelli_padded"]["samples_per_s"],
        **padding,
        "torch_compile": "ocelli's LM decoder layers" if config.compile else "not used",
        "threads": threads,
        "load_average": load_before,
        "load_average_after": common.load_average(),
    }


def render(record: dict[str, Any]) -> str:
    results, config = record["results"], record["config"]
    rows = []
    for side in SIDES:
        figures = results[side]
        memory = figures["peak_memory_per_sample_bytes"]
        rows.append(
            [
                LABELS[side],
                f"{figures['samples_per_s']:.2f}",
                f"{figures['mean_samples_per_s']:.2f}",
                "n/a" if memory is None else f"{memory / 2**20:.1f}",
            ]
        )
    table = common.markdown_table(
        ["training loop", "samples/s", "mean samples/s", "peak memory per sample (MiB)"], rows
    )
    ratio = results["ratio_packed_vs_hf"]
    verdict = "meets" if ratio >= 1.5 else "misses"
    return "\n".join(
        [
            "### Training throughput with sequence packing"
            + (", vision tower frozen (stage 2)" if config["frozen_vision"] else ""),
            "",
            table,
            "",
            f"**ocelli packed / HF padded: {ratio:.2f}** ({verdict} the issue's bar of >= 1.5); "
            f"ocelli padded / HF: {results['ratio_padded_vs_hf']:.2f}; packed / padded: "
            f"{results['ratio_packed_vs_padded']:.2f}. Tokens computed per real token: "
            f"{results['padded_tokens_per_real_token']:.2f} padded, "
            f"{results['packed_tokens_per_real_token']:.2f} packed "
            f"({results['packed_rows_per_batch']:.1f} row(s) per batch of "
            f"{config['batch_size']}; rows of <= {config['pack_max_tokens']} tokens only "
            "where the attention needs a dense mask). "
            "ocelli's side also projects to the vocabulary, and runs most of the LM's last "
            "layer, only at labelled positions, and "
            "steps AdamW on its fused kernel (the same update); the loop uses torch's default "
            "AdamW. fp32 on every side. "
            + compile_note(results, config)
            + frozen_note(results, config),
            "",
            f"*{common.caption(record)} Model: {config['model']['vision']} encoder, mlp connector, "
            f"{config['model']['language_model']} LM; batch {config['batch_size']}, one image and "
            f"{config['min_text_tokens']}-{config['max_text_tokens']} text tokens per sample "
            f"(uniform; mean sample {results['mean_sample_tokens']:.0f} tokens); {config['rounds']} "
            f"rounds of {config['warmup_steps']} warm-up + {config['measured_steps']} timed steps per "
            "side, rotating; samples/s = batch / median step time. Memory: peak resident memory "
            "during a side's steps minus before, per sample (activations, gradients, optimizer "
            "state; not the weights).*",
        ]
    )


def compile_note(results: dict[str, Any], config: dict[str, Any]) -> str:
    if not config.get("compile"):
        return "torch.compile: not used."
    first = results["first_call_s"]
    return (
        "torch.compile: ocelli's LM decoder layers (train.compile, dynamic shapes); the one-off "
        f"compile falls in the untimed first call: {first['ocelli_packed']:.0f} s for ocelli "
        f"packed, against {first['hf']:.1f} s for the plain loop's first step."
    )


def frozen_note(results: dict[str, Any], config: dict[str, Any]) -> str:
    if not config.get("frozen_vision"):
        return ""
    return (
        " Vision tower frozen on every side (stage 2's set-up): ocelli reads each image's "
        "tower output computed once before training "
        f"({results['vision_features_precompute_s']:.2f} s for the {results['num_images']} "
        "images, not in the step times); the plain loop runs the frozen tower every step."
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return common.run_benchmark(
        NAME, PackingBenchConfig, __doc__.split("\n\n")[0], run, render, argv, docs_section
    )


def docs_section(config: PackingBenchConfig) -> str:
    """A frozen tower (stage 2's set-up) keeps its own section beside the default one."""
    return f"{NAME}_frozen" if config.frozen_vision else NAME


if __name__ == "__main__":
    main(sys.argv[1:])
