"""How fast can a from-scratch language model learn the world's questions when the image
reaches it perfectly? The vision side is replaced by an oracle: each image becomes
tokens built from its exact scene graph (a learned embedding per shape, colour and size,
summed, plus an MLP of the object's position), so whatever the LM fails to learn is the
LM's and the training recipe's, not the encoder's.

Layouts of the oracle tokens:
- `objects`: one token per object (at most `max_objects`), what an ideal object-level
  interface would give;
- `grid`: an 8x8 grid of tokens, the cell holding an object's centre carries it, every
  other cell says "nothing" (what a grid encoder gives, with perfect features);
- `blind`: `max_objects` tokens that all say "nothing", the baseline: what the question
  alone predicts, trained the same way.

Each variant trains a Llama of the quickstart's size on single questions (loss on the
answer only) and reports exact-match accuracy per question type on the test split,
scored like `ocelli.eval.world_vqa` (reasoning by its yes/no verdict), at several steps.

    python benchmarks/study_oracle_tokens.py --threads 1 \
        --set "variants=[blind:5e-4, objects:5e-4, grid:5e-4, objects:2e-3]"
"""

from __future__ import annotations

import math
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

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
from ocelli.eval.world_vqa import is_correct  # noqa: E402
from ocelli.world import world_preset  # noqa: E402
from ocelli.world.dataset import generate_dataset  # noqa: E402
from ocelli.world.loading import load_questions, load_scenes  # noqa: E402

NAME = "study_oracle_tokens"
GRID = 8
WORDS = re.compile(r"\w+|[^\w\s]")
PAD, SEP, EOS = 0, 1, 2
LAYOUTS = ("objects", "grid", "blind")


@dataclass
class OracleStudyConfig:
    # "layout:lr" per variant, layout objects, grid or blind
    variants: list[str] = field(default_factory=lambda: ["blind:5e-4", "objects:5e-4", "grid:5e-4"])
    train_images: int = 3000
    test_images: int = 300
    seed: int = 0
    steps: int = 1000
    eval_every: int = 250
    batch_size: int = 32
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    warmup_fraction: float = 0.05
    max_objects: int = 4
    question_types: list[str] = field(default_factory=list)  # empty: every type


class Vocabulary:
    """Word-level tokens over the questions and answers (English)."""

    def __init__(self, texts: list[str]) -> None:
        self.ids = {"<pad>": PAD, "<sep>": SEP, "<eos>": EOS}
        for text in texts:
            for word in self.words(text):
                self.ids.setdefault(word, len(self.ids))

    @staticmethod
    def words(text: str) -> list[str]:
        return WORDS.findall(text.lower())

    def encode(self, text: str) -> list[int]:
        return [self.ids[word] for word in self.words(text)]

    def decode_ids(self) -> dict[int, str]:
        return {index: word for word, index in self.ids.items()}


class OracleTokens:
    """Scene graph -> (attribute ids (T, 3), positions (T, 2)); id `nothing` pads."""

    def __init__(self, scenes: list[Any], layout: str, max_objects: int) -> None:
        self.layout, self.max_objects = layout, max_objects
        self.attributes: dict[tuple[str, str], int] = {}
        for scene in scenes:
            for obj in scene.objects:
                for kind in ("shape", "color", "size"):
                    self.attributes.setdefault((kind, getattr(obj, kind)), len(self.attributes))
        self.nothing = len(self.attributes)

    def ids(self, obj: Any) -> torch.Tensor:
        return torch.tensor(
            [self.attributes[(k, getattr(obj, k))] for k in ("shape", "color", "size")]
        )

    def __call__(self, scene: Any) -> tuple[torch.Tensor, torch.Tensor]:
        size = torch.tensor([scene.width, scene.height], dtype=torch.float)
        if self.layout == "grid":
            ids = torch.full((GRID * GRID, 3), self.nothing)
            cells = torch.arange(GRID * GRID)
            positions = (torch.stack([cells % GRID, cells // GRID], 1).float() + 0.5) / GRID
            for obj in scene.objects:
                x, y = (torch.tensor(obj.center, dtype=torch.float) / size * GRID).long()
                ids[min(int(y), GRID - 1) * GRID + min(int(x), GRID - 1)] = self.ids(obj)
            return ids, positions
        ids = torch.full((self.max_objects, 3), self.nothing)
        positions = torch.zeros(self.max_objects, 2)
        if self.layout == "blind":
            return ids, positions
        for slot, obj in enumerate(scene.objects[: self.max_objects]):
            ids[slot] = self.ids(obj)
            positions[slot] = torch.tensor(obj.center, dtype=torch.float) / size
        return ids, positions


class OracleModel(nn.Module):
    def __init__(self, config: OracleStudyConfig, vocab_size: int, num_attributes: int) -> None:
        super().__init__()
        width = config.hidden_size
        self.attributes = nn.Embedding(num_attributes + 1, width)
        self.position = nn.Sequential(nn.Linear(2, width), nn.GELU(), nn.Linear(width, width))
        self.lm = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=vocab_size,
                hidden_size=width,
                intermediate_size=4 * width,
                num_hidden_layers=config.num_layers,
                num_attention_heads=config.num_heads,
                num_key_value_heads=config.num_heads,
                max_position_embeddings=256,
            )
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and (logits, labels) aligned for next-token prediction."""
        image = self.attributes(batch["attributes"]).sum(2) + self.position(batch["positions"])
        text = self.lm.get_input_embeddings()(batch["input_ids"])
        batch_size, image_tokens = image.shape[:2]
        mask = torch.cat([torch.ones(batch_size, image_tokens, dtype=torch.long), batch["mask"]], 1)
        labels = torch.cat([torch.full((batch_size, image_tokens), -100), batch["labels"]], 1)
        logits = self.lm(inputs_embeds=torch.cat([image, text], 1), attention_mask=mask).logits
        logits, labels = logits[:, :-1], labels[:, 1:]
        loss = nn.functional.cross_entropy(
            logits.flatten(0, 1), labels.flatten(), ignore_index=-100
        )
        return loss, logits.argmax(-1), labels


def make_samples(questions, scenes_by_id, vocab, tokens) -> list[dict[str, Any]]:
    samples = []
    for question in questions:
        attributes, positions = tokens(scenes_by_id[question["image_id"]])
        samples.append(
            {
                "prompt": vocab.encode(question["question"]) + [SEP],
                "answer": vocab.encode(question["answer"]) + [EOS],
                "attributes": attributes,
                "positions": positions,
                "question": question,
            }
        )
    return samples


def collate(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    length = max(len(s["prompt"]) + len(s["answer"]) for s in samples)
    input_ids = torch.full((len(samples), length), PAD)
    labels = torch.full((len(samples), length), -100)
    mask = torch.zeros(len(samples), length, dtype=torch.long)
    for row, sample in enumerate(samples):
        sequence = sample["prompt"] + sample["answer"]
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        labels[row, len(sample["prompt"]) : len(sequence)] = torch.tensor(sample["answer"])
        mask[row, : len(sequence)] = 1
    return {
        "input_ids": input_ids,
        "labels": labels,
        "mask": mask,
        "attributes": torch.stack([s["attributes"] for s in samples]),
        "positions": torch.stack([s["positions"] for s in samples]),
    }


@torch.no_grad()
def evaluate(model: OracleModel, samples: list[dict[str, Any]], words: dict[int, str]) -> dict:
    """Accuracy overall and per type: the teacher-forced argmax of every answer token is
    the greedy answer when all of them are right, so the answer read off the argmax up
    to <eos> is what greedy decoding would say."""
    model.eval()
    per_type: dict[str, list[bool]] = defaultdict(list)
    for begin in range(0, len(samples), 256):
        chunk = samples[begin : begin + 256]
        _, predicted, labels = model(collate(chunk))
        for sample, row_pred, row_labels in zip(chunk, predicted, labels, strict=True):
            answer_ids = row_pred[row_labels != -100].tolist()
            answer_ids = answer_ids[: answer_ids.index(EOS)] if EOS in answer_ids else answer_ids
            text = " ".join(words[i] for i in answer_ids)
            question = sample["question"]
            text_truth = " ".join(Vocabulary.words(question["answer"]))
            per_type[question["type"]].append(is_correct(text, text_truth, question["type"]))
    model.train()
    every = [ok for oks in per_type.values() for ok in oks]
    return {
        "accuracy": round(sum(every) / len(every), 4),
        "per_type": {name: round(sum(oks) / len(oks), 3) for name, oks in sorted(per_type.items())},
    }


def train_variant(config, layout, lr, train_q, test_q, scenes, vocab) -> dict[str, Any]:
    torch.manual_seed(config.seed)
    tokens = OracleTokens(list(scenes.values()), layout, config.max_objects)
    train = make_samples(train_q, scenes, vocab, tokens)
    test = make_samples(test_q, scenes, vocab, tokens)
    model = OracleModel(config, len(vocab.ids), tokens.nothing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, int(config.steps * config.warmup_fraction))

    def schedule(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / config.steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(config.seed)
    words = vocab.decode_ids()
    curve, start = [], time.perf_counter()
    for step in range(1, config.steps + 1):
        picks = torch.randint(len(train), (config.batch_size,), generator=generator).tolist()
        loss, _, _ = model(collate([train[i] for i in picks]))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step % config.eval_every == 0 or step == config.steps:
            point = {"step": step, "loss": round(loss.item(), 4), **evaluate(model, test, words)}
            point["seconds"] = round(time.perf_counter() - start, 1)
            curve.append(point)
            print(f"{layout} lr {lr}: {point}", flush=True)
    return {"layout": layout, "lr": lr, "image_tokens": len(train[0]["attributes"]), "curve": curve}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config, args = parse_args(
        OracleStudyConfig, __doc__.splitlines()[0], argv, RESULTS_DIR / f"{NAME}.json"
    )
    threads = set_threads(args.threads)
    load = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        world = world_preset("quickstart", cogent="A", langs=["en"])
        for split, count in (("train", config.train_images), ("test", config.test_images)):
            generate_dataset(Path(tmp) / split, count, config.seed, split, world, progress=False)
        scenes = {s.id: s for split in ("train", "test") for s in load_scenes(Path(tmp) / split)}
        train_q, test_q = load_questions(Path(tmp) / "train"), load_questions(Path(tmp) / "test")
    if config.question_types:
        train_q = [q for q in train_q if q["type"] in config.question_types]
        test_q = [q for q in test_q if q["type"] in config.question_types]
        if not train_q or not test_q:
            raise ConfigError(f"no questions of types {config.question_types} in the world")
    vocab = Vocabulary([q[key] for q in train_q + test_q for key in ("question", "answer")])
    variants = []
    for variant in config.variants:
        layout, _, lr = variant.partition(":")
        if layout not in LAYOUTS:
            raise ConfigError(f"variant {variant!r}: layout must be one of {', '.join(LAYOUTS)}")
        variants.append(train_variant(config, layout, float(lr), train_q, test_q, scenes, vocab))
    results = {"threads": threads, "load_average": load, "variants": variants}
    record = write_results(args.out, NAME, config, results)
    if not args.no_docs:
        update_docs_section(
            args.docs, "Oracle image tokens: how fast the LM learns", docs_body(record)
        )
    return record


def docs_body(record: dict[str, Any]) -> str:
    results = record["results"]
    rows = [
        [v["layout"], v["image_tokens"], v["lr"], point["step"], point["accuracy"]]
        + [point["per_type"].get(t, "") for t in sorted(point["per_type"])]
        for v in results["variants"]
        for point in v["curve"]
    ]
    types = sorted(results["variants"][0]["curve"][0]["per_type"])
    header = ["layout", "image tokens", "lr", "step", "accuracy", *types]
    return f"{markdown_table(header, rows)}\n\n{caption(record)}"


if __name__ == "__main__":
    main()
