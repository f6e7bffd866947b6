"""Can the language model answer the world's questions from the exact scene description,
and how fast does it learn to? A model cannot read an image it could not read as text,
so this probe puts a ceiling on what the multimodal stages can reach with that LM.

Each checkpoint of a text stage (`ocelli train --stage text`, a causal LM saved with
`save_pretrained`) is asked every test question with the image's exact description in
its context: the first human turn of the split's `text_conversations.json` with the
question swapped in, through the run's chat template, greedy. Answers are scored like
`ocelli.eval.world_vqa` (reasoning by its leading verdict), per question type and for
seen and held-out phrasings.

The trainer keeps its last checkpoints only; to keep every one of a run, raise
`text.train.keep_last`:

    ocelli train --recipe quickstart --out runs/probe --stage text \
        --set text.train.lr=5e-4 --set text.train.max_steps=2000 \
        --set text.train.save_every=250 --set text.train.keep_last=20
    python benchmarks/study_text_probe.py --threads 1 --set run_dir=runs/probe
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS_DIR,
    caption,
    load_average,
    markdown_table,
    parse_args,
    set_threads,
    update_docs_section,
    write_results,
)

from ocelli.errors import ConfigError  # noqa: E402
from ocelli.eval.world_vqa import blind_baseline, is_correct, load_questions  # noqa: E402

NAME = "study_text_probe"
STEP_DIR = re.compile(r"step-0*(\d+)$")


@dataclass
class TextProbeConfig:
    run_dir: str = "runs/probe"  # a run with a text stage, its world and tokenizer
    # LM checkpoints to probe; empty: every text/checkpoints/step-*/model and text/final
    checkpoints: list[str] = field(default_factory=list)
    split: str = "test"
    limit: int = 800  # questions, in file order
    batch_size: int = 64
    max_new_tokens: int = 24


def checkpoint_dirs(config: TextProbeConfig) -> list[Path]:
    if config.checkpoints:
        found = [Path(path) for path in config.checkpoints]
    else:
        text_dir = Path(config.run_dir) / "text"
        found = sorted((text_dir / "checkpoints").glob("step-*/model"))
        found += [text_dir / "final"]
    missing = [str(path) for path in found if not (path / "config.json").is_file()]
    if missing:
        raise ConfigError(
            f"no saved language model in {', '.join(missing)}; train one with "
            "`ocelli train --stage text` or name checkpoints with --set checkpoints=[...]"
        )
    return found


def step_of(checkpoint: Path) -> str:
    for part in (checkpoint.name, checkpoint.parent.name):
        match = STEP_DIR.match(part)
        if match:
            return match.group(1)
    return checkpoint.name


def descriptions(world_dir: Path) -> dict[tuple[str, str], str]:
    """(image id, language) -> the exact description that opens its text conversation."""
    path = world_dir / "text_conversations.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found; generate the world with `ocelli world generate`")
    found = {}
    for conversation in json.loads(path.read_text(encoding="utf-8")):
        first_turn = conversation["conversations"][0]["value"]
        image_id = conversation["id"].rsplit("_", 1)[0]
        found[(image_id, conversation["lang"])] = first_turn.split("\n", 1)[0]
    return found


def probe(
    checkpoint: Path, tokenizer: Any, questions: list[dict[str, Any]], context: dict, config
) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    prompts = [
        tokenizer.apply_chat_template(
            [
                {
                    "role": "user",
                    "content": context[(q["image_id"], q["lang"])] + "\n" + q["question"],
                }
            ],
            tokenize=False,
            add_generation_prompt=True,
        )
        for q in questions
    ]
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    by_type, by_phrasing = defaultdict(list), defaultdict(list)
    for start in range(0, len(prompts), config.batch_size):
        batch = tokenizer(
            prompts[start : start + config.batch_size],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        )
        with torch.no_grad():
            output = model.generate(
                **batch,
                max_new_tokens=config.max_new_tokens,
                do_sample=False,
                eos_token_id=end_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        answers = tokenizer.batch_decode(
            output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True
        )
        for question, answer in zip(
            questions[start : start + config.batch_size], answers, strict=True
        ):
            right = is_correct(answer, question["answer"], question["type"])
            by_type[question["type"]].append(right)
            by_phrasing["held-out" if question.get("heldout") else "seen"].append(right)

    def mean(values: list[bool]) -> float:
        return round(sum(values) / len(values), 3) if values else float("nan")

    return {
        "checkpoint": str(checkpoint),
        "step": step_of(checkpoint),
        "accuracy": mean([right for values in by_type.values() for right in values]),
        "per_type": {kind: mean(values) for kind, values in sorted(by_type.items())},
        "per_phrasing": {kind: mean(values) for kind, values in sorted(by_phrasing.items())},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from transformers import AutoTokenizer

    config, args = parse_args(
        TextProbeConfig, __doc__.splitlines()[0], argv, RESULTS_DIR / f"{NAME}.json"
    )
    threads = set_threads(args.threads)
    load = load_average()
    run_dir = Path(config.run_dir)
    checkpoints = checkpoint_dirs(config)
    world_dir = run_dir / "world" / config.split
    questions = load_questions(world_dir, limit=config.limit)
    context = descriptions(world_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "tokenizer")
    tokenizer.padding_side = "left"
    points = []
    for checkpoint in checkpoints:
        points.append(probe(checkpoint, tokenizer, questions, context, config))
        print(json.dumps(points[-1]), flush=True)
    recipe_path = run_dir / "text" / "recipe.json"
    recipe = json.loads(recipe_path.read_text()) if recipe_path.is_file() else None  # + provenance
    blind = blind_baseline(run_dir / "world" / "train", questions)
    results = {
        "threads": threads,
        "load_average": load,
        "recipe": recipe,
        "blind_accuracy": blind["accuracy"],
        "curve": points,
    }
    record = write_results(args.out, NAME, config, results)
    if not args.no_docs:
        update_docs_section(
            args.docs, "Text probe: the LM answering from the exact description", docs_body(record)
        )
    return record


def docs_body(record: dict[str, Any]) -> str:
    curve = record["results"]["curve"]
    types = sorted(curve[0]["per_type"])
    rows = [
        [point["step"], point["accuracy"]]
        + [point["per_phrasing"].get(kind, "") for kind in ("seen", "held-out")]
        + [point["per_type"][kind] for kind in types]
        for point in curve
    ]
    header = ["step", "accuracy", "seen phrasings", "held-out phrasings", *types]
    blind = record["results"]["blind_accuracy"]
    note = (
        f"Blind baseline on the same questions (the most common training answer of each "
        f"question's type, subtype and language): {blind:.3f}."
    )
    return f"{markdown_table(header, rows)}\n\n{note}\n\n{caption(record)}"


if __name__ == "__main__":
    main()
