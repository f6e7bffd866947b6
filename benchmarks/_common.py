"""What the performance benchmarks share: the model pair, synthetic data, the machine's
matmul peak, result files and the docs section each script owns.

Every benchmark builds one ocelli model and exports it with `export_llava_hf`, so the
ocelli side and the `transformers.LlavaForConditionalGeneration` side start from the
same weights and give the same logits; any difference in speed comes from the code
around the model, not from the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.utils.data import Dataset

from ocelli.config import apply_overrides, from_dict
from ocelli.errors import ConfigError
from ocelli.utils import atomic_write_json, atomic_write_text, provenance

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
DOCS_PATH = REPO_ROOT / "docs" / "benchmarks.md"
DOCS_TITLE = "# Benchmarks"
DOCS_INTRO = (
    "How fast ocelli trains and generates, and how well its models learn, measured by the "
    "scripts in `benchmarks/`."
)
PERFORMANCE_HEADING = "## Performance"
IGNORE_INDEX = -100
Config = TypeVar("Config")


@dataclass
class ModelSpec:
    """The benchmarked model: presets plus overrides, as `from_components` takes them.

    The defaults give 64 image tokens (64px SigLIP images in 8px patches) and a
    4-layer Llama of width 256."""

    vision: str = "siglip-tiny"
    language_model: str = "llama-tiny"
    vision_overrides: dict[str, Any] = field(default_factory=dict)
    language_model_overrides: dict[str, Any] = field(default_factory=dict)
    vision_feature_layer: int = -2
    vocab_size: int = 1024
    image_token_id: int = 3
    pad_token_id: int = 0
    seed: int = 0


@dataclass
class GenerationBenchConfig:
    """What every generation-speed benchmark sets: the model, the batch sizes, the prompt
    and answer lengths, and the alternating timed rounds per side."""

    model: ModelSpec = field(default_factory=ModelSpec)
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    num_prompt_text_tokens: int = 32  # per prompt, beside the image tokens
    max_new_tokens: int = 32
    warmup_calls: int = 1  # per side and batch size, not timed
    rounds: int = 4  # timed calls per side and batch size

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.max_new_tokens < 1 or not self.batch_sizes:
            raise ConfigError(
                "rounds and max_new_tokens must be >= 1 and batch_sizes not empty; got "
                f"{self.rounds}, {self.max_new_tokens} and {self.batch_sizes}"
            )


def save_tiny_model(
    directory: Path,
    texts: list[str],
    vocab_size: int = 320,
    language_model_overrides: dict[str, Any] | None = None,
) -> Path:
    """A tiny random model (CLIP-tiny, MLP, Llama-tiny) with a tokenizer trained on
    `texts`, saved with its processor into `directory`: the --tiny modes' model."""
    from ocelli.data import train_tokenizer
    from ocelli.data.processing import OcelliProcessor
    from ocelli.model import OcelliForConditionalGeneration

    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    torch.manual_seed(0)
    model = OcelliForConditionalGeneration.from_components(
        vision="clip-tiny",
        language_model="llama-tiny",
        connector="mlp",
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vocab_size=len(tokenizer),
        # exactly the tokenizer's ids, so every generated id decodes to text
        language_model_overrides={"vocab_size": len(tokenizer), **(language_model_overrides or {})},
    )
    model.save_pretrained(directory)
    OcelliProcessor.for_model(model, tokenizer).save_pretrained(directory)
    return directory


def build_model_pair(spec: ModelSpec, work_dir: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ocelli model, the Llava model exported from it), same weights, both in eval mode."""
    from transformers import LlavaForConditionalGeneration

    from ocelli.model import OcelliForConditionalGeneration, export_llava_hf

    torch.manual_seed(spec.seed)
    model = OcelliForConditionalGeneration.from_components(
        spec.vision,
        spec.language_model,
        "mlp",
        image_token_id=spec.image_token_id,
        vocab_size=spec.vocab_size,
        pad_token_id=spec.pad_token_id,
        vision_overrides=spec.vision_overrides,
        language_model_overrides=spec.language_model_overrides,
        vision_feature_layer=spec.vision_feature_layer,
    )
    export_dir = export_llava_hf(model, work_dir / "llava")
    # The same attention kernel on both sides: ocelli's parts are built with sdpa.
    llava = LlavaForConditionalGeneration.from_pretrained(export_dir, attn_implementation="sdpa")
    return model.eval(), llava.eval()


def synthetic_ids(
    num_samples: int,
    num_text_tokens: int,
    num_image_tokens: int,
    spec: ModelSpec,
    generator: torch.Generator,
    text_before_image: int = 8,
) -> torch.Tensor:
    """Random text ids with one image's placeholder run after `text_before_image` tokens
    (a system prompt, then the image, then the question and answer, as in LLaVA)."""
    low = max(spec.image_token_id, spec.pad_token_id) + 1  # text never hits either id
    length = num_text_tokens + num_image_tokens
    ids = torch.randint(low, spec.vocab_size, (num_samples, length), generator=generator)
    before = min(text_before_image, num_text_tokens)
    ids[:, before : before + num_image_tokens] = spec.image_token_id
    return ids


class SyntheticSamples(Dataset):
    """Training samples of random pixels and token ids; the loss covers the text only."""

    def __init__(
        self,
        num_samples: int,
        num_text_tokens: int,
        num_image_tokens: int,
        image_size: int,
        spec: ModelSpec,
        seed: int = 0,
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.input_ids = synthetic_ids(
            num_samples, num_text_tokens, num_image_tokens, spec, generator
        )
        self.labels = self.input_ids.masked_fill(
            self.input_ids == spec.image_token_id, IGNORE_INDEX
        )
        self.pixel_values = torch.randn(num_samples, 3, image_size, image_size, generator=generator)

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids[index],
            "attention_mask": torch.ones_like(self.input_ids[index]),
            "labels": self.labels[index],
            "pixel_values": self.pixel_values[index],
        }


def collate(samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {name: torch.stack([s[name] for s in samples]) for name in samples[0]}


# -- the machine ---------------------------------------------------------------------


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_threads(num_threads: int | None) -> int:
    """Use `num_threads` intra-op threads (None: one per available core); returns it."""
    num_threads = num_threads or available_cores()
    torch.set_num_threads(num_threads)
    return num_threads


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown cpu"


def load_average() -> float | None:
    """The 1-minute load average: how busy the machine was with other work."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def matmul_peak_flops(size: int = 2048, repeats: int = 5) -> float:
    """Dense fp32 FLOP/s of the best of `repeats` (size x size) @ (size x size) products
    at the current thread count: the practical peak MFU is measured against."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # first call picks kernels and allocates
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best


def step_durations(stamps: Sequence[float], warmup_steps: int) -> list[float]:
    """Seconds of each step after the warm-up; `stamps[i]` is when step i ended, so the
    first timed step runs from the end of the last warm-up step."""
    if warmup_steps < 1 or len(stamps) <= warmup_steps:
        raise ValueError("need at least one warm-up step and one timed step")
    return [stamps[i] - stamps[i - 1] for i in range(warmup_steps, len(stamps))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- configuration and output --------------------------------------------------------


def parse_args(
    config_class: type[Config], description: str, argv: Sequence[str] | None, default_out: Path
) -> tuple[Config, argparse.Namespace]:
    """The script's config (dataclass defaults, `--set key=value` overrides) and paths."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set batch_size=8 --set model.vision=clip-tiny",
    )
    parser.add_argument("--threads", type=int, default=None, help="default: one per core")
    parser.add_argument("--out", type=Path, default=default_out, help="result JSON")
    parser.add_argument("--docs", type=Path, default=DOCS_PATH, help="markdown file to update")
    parser.add_argument("--no-docs", action="store_true", help="write the JSON only")
    args = parser.parse_args(argv)
    data = apply_overrides(dataclasses.asdict(config_class()), args.set)
    return from_dict(config_class, data, config_class.__name__), args


def write_results(path: Path, name: str, config: Any, results: dict[str, Any]) -> dict[str, Any]:
    record = {
        "benchmark": name,
        "results": results,
        "config": dataclasses.asdict(config),
        "provenance": {**provenance(), "cpu": cpu_model()},
    }
    atomic_write_json(path, record)
    return record


def caption(record: dict[str, Any]) -> str:
    """'Measured <date> on commit <sha>, <machine>, <threads> threads', for a table."""
    prov, results = record["provenance"], record["results"]
    commit = (prov.get("git_commit") or "unknown")[:12]
    if (prov.get("git_commit") or "").endswith("-dirty"):
        commit += " (uncommitted changes)"
    load = results.get("load_average")
    load_text = f", 1-min load average {load} before the run" if load is not None else ""
    return (
        f"Measured {prov['created'][:10]} on commit `{commit}`, {prov['cpu']} "
        f"({prov['machine']}), torch {prov['torch_version']}, "
        f"{results['threads']} thread(s){load_text}."
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def update_docs_section(path: Path, name: str, body: str) -> None:
    """Put `body` between this benchmark's markers in `path`, leaving the rest as it is.

    Missing markers go at the end of the Performance section (made if absent), so a
    rerun replaces its own table and never touches other sections."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.is_file() else f"{DOCS_TITLE}\n\n{DOCS_INTRO}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = _insert_in_performance_section(text, block)
    atomic_write_text(path, text.rstrip("\n") + "\n")


def _insert_in_performance_section(text: str, block: str) -> str:
    lines = text.rstrip("\n").split("\n")
    if PERFORMANCE_HEADING not in lines:
        return "\n".join(lines) + f"\n\n{PERFORMANCE_HEADING}\n\n{block}\n"
    begin = lines.index(PERFORMANCE_HEADING) + 1
    following = [i for i in range(begin, len(lines)) if lines[i].startswith("## ")]
    cut = following[0] if following else len(lines)
    before = "\n".join(lines[:cut]).rstrip("\n")
    after = "\n".join(lines[cut:])
    return f"{before}\n\n{block}\n" + (f"\n{after}\n" if after else "")


def run_benchmark(
    name: str,
    config_class: type,
    description: str,
    run: Any,
    render: Any,
    argv: Sequence[str] | None,
    section: Callable[[Any], str] | None = None,
) -> dict[str, Any]:
    """Parse flags, run, write the JSON, update the docs section (`name`, or
    `section(config)` for set-ups that keep a section of their own), print the table."""
    config, args = parse_args(config_class, description, argv, RESULTS_DIR / f"{name}.json")
    record = write_results(args.out, name, config, run(config, args.threads))
    markdown = render(record)
    if not args.no_docs:
        update_docs_section(args.docs, section(config) if section else name, markdown)
    print(markdown)
    return record
