"""Validation while training, as HF Trainer's eval_steps: it shows *when* a model starts
to use its image, not only where it ended.

The loop (ocelli.train.loop) decides when: every `Evaluation.every` optimizer steps and
after the last, on the main process, through `run_isolated`, which leaves training
exactly as it found it. This module also decides what, for the multimodal stages
(`stage_evaluation`): the loss on the val split's file of the same name as the stage's
training data and, for instruct, exact-match VQA accuracy on a fixed seeded sample of
the val questions beside the blind baseline of those same questions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ocelli.train import checkpoint as ckpt

ACCURACY_STAGES = ("instruct",)  # the stages whose model answers the world's questions


@dataclass
class Evaluation:
    """`run(model)` returns one evaluation's metrics, written to metrics.jsonl as
    {"step": N, **metrics} every `every` optimizer steps and after the last."""

    every: int
    run: Callable[[nn.Module], dict[str, Any]]


def run_isolated(run: Callable[[nn.Module], dict[str, Any]], model: nn.Module) -> dict[str, Any]:
    """`run(model)` in eval mode without gradients, leaving no trace on training: every
    module's train/eval mode and every RNG (torch, CUDA, numpy, python) are put back, so a
    run with validation trains exactly as one without, and resumes exactly too. The data
    order needs nothing: it comes from the sampler's own (seed, epoch) generator."""
    modes = [(module, module.training) for module in model.modules()]
    rng = ckpt.capture_rng_state()
    model.eval()
    try:
        with torch.no_grad():
            return run(model)
    finally:
        for module, training in modes:
            module.training = training
        ckpt.restore_rng_state(rng)


def evaluation_line(description: str, record: dict[str, Any]) -> str:
    """`[stage 2: ...] step 100 validation: val_loss 1.2345 | val_accuracy 0.4100 | ...`."""
    figures = [
        f"{key} {value:.4f}"
        for key, value in record.items()
        if key != "step" and isinstance(value, float)
    ]
    return f"[{description}] step {record['step']} validation: " + " | ".join(figures)


# --- the multimodal stages ------------------------------------------------------------


def stage_evaluation(
    recipe: Any, paths: Any, stage: str, model: nn.Module, processor: Any, data_file: str | Path
) -> Evaluation | None:
    """The validation of stage `stage` (align or instruct) when its recipe section asks for
    it; None, said once, when it is off or the val split has nothing to measure."""
    section = getattr(recipe, stage)
    if section.eval_every <= 0:
        return None
    val_dir = paths.world("val")
    # by name only: a recipe's own data file may be an absolute path outside the world
    conversations = val_dir / Path(data_file).name
    questions = val_dir / "questions.jsonl" if stage in ACCURACY_STAGES else None
    if not _has_content(conversations):
        _say(
            f"[{stage}] validation skipped: {conversations} is missing or empty "
            "(world.val_images: 0?)"
        )
        return None
    if questions is not None and not _has_content(questions):
        _say(f"[{stage}] validation accuracy skipped: {questions} is missing or empty")
        questions = None
    validation = StageValidation(
        processor=processor,
        conversations=conversations,
        questions=questions,
        train_dir=paths.world("train"),
        size=section.eval_questions,
        batch_size=section.train.batch_size,
        seed=recipe.seed,
        generation_batch_size=recipe.eval.batch_size,
        max_new_tokens=recipe.eval.max_new_tokens,
    )
    return Evaluation(every=section.eval_every, run=validation)


@dataclass
class StageValidation:
    """One stage's validation data, loaded once; called with the model being trained.

    The conversations and questions are the same seeded sample at every evaluation, so
    the curve moves only because the model does. The blind baseline of those questions
    (the most common training answer of each question's kind) never moves: computed once.
    """

    processor: Any
    conversations: Path
    questions: Path | None
    train_dir: Path
    size: int
    batch_size: int
    seed: int
    generation_batch_size: int = 64
    max_new_tokens: int = 24

    def __call__(self, model: nn.Module) -> dict[str, Any]:
        began = time.perf_counter()
        record: dict[str, Any] = {
            "val_loss": validation_loss(model, self.dataset, self.batch_size),
            "val_conversations": len(self.dataset),
        }
        if self.questions is not None:
            record.update(self._accuracy(model))
        record["val_seconds"] = round(time.perf_counter() - began, 2)
        return record

    @cached_property
    def dataset(self) -> Any:
        from ocelli.data import ConversationDataset, load_conversations

        records = load_conversations(self.conversations)
        return ConversationDataset(_sample(records, self.size, self.seed), self.processor)

    @cached_property
    def sampled_questions(self) -> list[dict[str, Any]]:
        from ocelli.eval.world_vqa import load_questions

        return _sample(load_questions(self.questions.parent), self.size, self.seed)

    @cached_property
    def blind_accuracy(self) -> float:
        from ocelli.eval.world_vqa import blind_baseline

        return blind_baseline(self.train_dir, self.sampled_questions)["accuracy"]

    def _accuracy(self, model: nn.Module) -> dict[str, Any]:
        from ocelli.eval.world_vqa import answer_questions, summarize
        from ocelli.generate.pipeline import OcelliPipeline

        pipeline = OcelliPipeline(model, self.processor)
        records = answer_questions(
            pipeline,
            self.questions.parent,
            self.sampled_questions,
            self.generation_batch_size,
            self.max_new_tokens,
        )
        metrics = summarize(records)
        return {
            "val_accuracy": float(metrics["accuracy"]),
            "val_blind_accuracy": float(self.blind_accuracy),
            "val_accuracy_by_type": metrics.get("by_type", {}),
            "val_questions": len(records),
        }


def validation_loss(model: nn.Module, dataset: Any, batch_size: int) -> float:
    """Mean loss over `dataset` in batches of the training batch size, each batch weighted
    by its number of samples (as HF Trainer's eval_loss)."""
    from accelerate.utils import send_to_device

    from ocelli.data import PadCollator

    collate = PadCollator(dataset.processor.tokenizer.pad_token_id)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for begin in range(0, len(dataset), batch_size):
        samples = [dataset[i] for i in range(begin, min(begin + batch_size, len(dataset)))]
        batch = send_to_device(collate(samples), device)
        total += float(model(**batch).loss) * len(samples)
        count += len(samples)
    return total / max(count, 1)


def _sample(items: list[Any], size: int, seed: int) -> list[Any]:
    """A seeded sample of `size` items, kept in file order; all of them when fewer."""
    import numpy as np

    if len(items) <= size:
        return list(items)
    chosen = np.random.default_rng(seed).choice(len(items), size=size, replace=False)
    return [items[i] for i in sorted(chosen.tolist())]


def _has_content(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 2  # "[]" is empty too


def _say(message: str) -> None:
    from accelerate import PartialState

    if PartialState(cpu=not torch.cuda.is_available()).is_main_process:
        print(message, flush=True)
