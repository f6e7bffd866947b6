"""Alignment runs on ocelli's training loop: DPO/IPO, the reward model, RL (GRPO or
RLOO against a reward) and further supervised tuning (LRV-augmented instructions) from
a saved SFT model directory.

The output directory has the loop's usual layout (checkpoints/, metrics.jsonl,
final/); `final/` is a normal ocelli model directory with its processor, so
`ocelli.load(out / "final")` chats with the aligned model.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ocelli.align.batches import PairCollator, PreferenceDataset
from ocelli.align.dpo import DPOConfig, DPOModel, frozen_copy
from ocelli.align.pairs import PreferencePair, load_pairs
from ocelli.align.reward import RewardModel, pair_accuracy
from ocelli.align.rewards import Reward, reward_from_spec, world_prompts
from ocelli.align.rl import PromptIndices, RLConfig, RLModel, collate_prompt_indices
from ocelli.errors import CheckpointError, ConfigError
from ocelli.utils.io import atomic_write_json


def load_model_and_processor(model_dir: str | Path) -> tuple[Any, Any]:
    """A saved ocelli model and the processor saved beside it."""
    from ocelli.data.processing import OcelliProcessor
    from ocelli.model import OcelliForConditionalGeneration

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"{path} is not a saved ocelli model (no config.json); give the final/ directory "
            "of an `ocelli train` stage"
        )
    processor = OcelliProcessor.from_pretrained(path)
    return OcelliForConditionalGeneration.from_pretrained(str(path)), processor


def train_dpo(
    model_dir: str | Path,
    data: str | Path,
    out_dir: str | Path,
    config: DPOConfig | None = None,
    train_config: Any = None,
    reference_dir: str | Path | None = None,
    freeze_vision: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """DPO (or IPO) of the model in `model_dir` on the preference file `data`.

    The reference is a frozen copy of the starting model unless `reference_dir` names
    another saved model (it must have the same architecture and tokenizer)."""
    from ocelli.train.loop import train
    from ocelli.train.trainer_config import TrainConfig

    config = config or DPOConfig()
    train_config = train_config or TrainConfig(lr=5e-5, max_steps=50, batch_size=4)
    pairs = load_pairs(data)
    policy, processor = load_model_and_processor(model_dir)
    reference = (
        frozen_copy(policy) if reference_dir is None else load_model_and_processor(reference_dir)[0]
    )
    if freeze_vision:
        # The preference is about what the text claims; the vision tower only moves
        # away from the features the connector was trained on.
        policy.freeze(vision=True)
    dataset = PreferenceDataset(pairs, processor, config.segment_weight)
    wrapper = DPOModel(policy, reference, config)
    result = train(
        wrapper,
        dataset,
        PairCollator(processor.pad_token_id),
        train_config,
        out_dir,
        resume=resume,
        description=f"dpo ({config.loss})",
    )
    processor.save_pretrained(result.final_dir)
    summary = {
        "dpo": dataclasses.asdict(config),
        "train": dataclasses.asdict(train_config),
        "model": str(model_dir),
        "reference": str(reference_dir or model_dir),
        "data": str(data),
        "num_pairs": len(pairs),
        "result": result.summary(),
    }
    atomic_write_json(Path(out_dir) / "align_summary.json", summary)
    return summary


def train_sft(
    model_dir: str | Path,
    records: Sequence[Any],
    out_dir: str | Path,
    train_config: Any = None,
    freeze_vision: bool = True,
    description: str = "sft",
) -> dict[str, Any]:
    """Supervised tuning of the model in `model_dir` on conversation records (ocelli.data's
    ConversationRecord), e.g. its instruction data with LRV's negative instructions mixed
    in (`ocelli.align.preference_data.lrv_conversations`). Returns the loop's summary and
    writes it to OUT/sft_summary.json."""
    from ocelli.data import ConversationDataset, PadCollator, count_tokens
    from ocelli.train.loop import train
    from ocelli.train.trainer_config import TrainConfig

    if not records:
        raise ConfigError("no conversation records to tune on")
    train_config = train_config or TrainConfig(lr=1e-4, max_steps=50, batch_size=16)
    model, processor = load_model_and_processor(model_dir)
    if freeze_vision:
        model.freeze(vision=True)
    result = train(
        model,
        ConversationDataset(records, processor),
        PadCollator(processor.tokenizer.pad_token_id),
        train_config,
        out_dir,
        count_tokens=count_tokens,
        description=description,
    )
    processor.save_pretrained(result.final_dir)
    summary = {
        "train": dataclasses.asdict(train_config),
        "model": str(model_dir),
        "num_records": len(records),
        "result": result.summary(),
    }
    atomic_write_json(Path(out_dir) / "sft_summary.json", summary)
    return summary


def split_by_image(
    pairs: list[PreferencePair], holdout: float, seed: int = 0
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Train and held-out pairs, split by image so no held-out image was trained on."""
    import numpy as np

    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"holdout must lie strictly between 0 and 1, got {holdout}")
    images = sorted({pair.image for pair in pairs})
    order = np.random.default_rng(seed).permutation(len(images))
    held = {images[i] for i in order[: max(1, round(holdout * len(images)))]}
    train = [pair for pair in pairs if pair.image not in held]
    if not train:
        raise ConfigError(f"holdout {holdout} leaves no pairs to train on; lower it")
    return train, [pair for pair in pairs if pair.image in held]


def train_reward(
    model_dir: str | Path,
    data: str | Path,
    out_dir: str | Path,
    train_config: Any = None,
    holdout: float = 0.2,
    freeze_vision: bool = True,
) -> dict[str, Any]:
    """A Bradley-Terry reward model from the model in `model_dir`; returns held-out
    accuracy before and after training (OUT/final holds the model and its head)."""
    from ocelli.train.loop import train
    from ocelli.train.trainer_config import TrainConfig

    train_config = train_config or TrainConfig(lr=1e-4, max_steps=50, batch_size=4)
    train_pairs, held_pairs = split_by_image(load_pairs(data), holdout, train_config.seed)
    backbone, processor = load_model_and_processor(model_dir)
    if freeze_vision:
        backbone.freeze(vision=True)
    model = RewardModel(backbone)
    collate = PairCollator(processor.pad_token_id)
    held = PreferenceDataset(held_pairs, processor)
    before = pair_accuracy(model, held, collate)
    result = train(
        model,
        PreferenceDataset(train_pairs, processor),
        collate,
        train_config,
        out_dir,
        description="reward",
    )
    processor.save_pretrained(result.final_dir)
    summary = {
        "num_train_pairs": len(train_pairs),
        "num_heldout_pairs": len(held_pairs),
        "heldout_accuracy_before": before,
        "heldout_accuracy": pair_accuracy(model, held, collate),
        "train": dataclasses.asdict(train_config),
        "result": result.summary(),
    }
    atomic_write_json(Path(out_dir) / "reward_summary.json", summary)
    return summary


def train_rl(
    model_dir: str | Path,
    world_dir: str | Path,
    reward: str | Reward,
    out_dir: str | Path,
    config: RLConfig | None = None,
    train_config: Any = None,
    reference_dir: str | Path | None = None,
    freeze_vision: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """GRPO/RLOO of the model in `model_dir` on the prompts of `world_dir` against
    `reward` ("world", "model:DIR" or a Reward), with a KL penalty to a frozen copy of
    the starting model (or to `reference_dir`).

    OUT holds the loop's layout (checkpoints/, metrics.jsonl, final/), rl_config.json
    (the resolved settings, written first), rl_metrics.jsonl (reward, KL and loss of
    every step) and rl_summary.json."""
    from ocelli.train.loop import train
    from ocelli.train.trainer_config import TrainConfig

    config = config or RLConfig()
    train_config = train_config or TrainConfig(lr=1e-5, max_steps=50, batch_size=4)
    prompts = world_prompts(world_dir, config.kinds, config.num_prompts, train_config.seed)
    reward_fn = reward_from_spec(reward, world_dir) if isinstance(reward, str) else reward
    policy, processor = load_model_and_processor(model_dir)
    reference = (
        frozen_copy(policy) if reference_dir is None else load_model_and_processor(reference_dir)[0]
    )
    if freeze_vision:
        policy.freeze(vision=True)
    model = RLModel(policy, reference, processor, reward_fn, prompts, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    resolved = {
        "rl": dataclasses.asdict(config),
        "train": dataclasses.asdict(train_config),
        "model": str(model_dir),
        "reference": str(reference_dir or model_dir),
        "world": str(Path(world_dir).resolve()),
        "reward": reward_fn.name,
        "num_prompts": len(prompts),
        "prompt_kinds": {kind: sum(p.kind == kind for p in prompts) for kind in config.kinds},
    }
    atomic_write_json(out / "rl_config.json", resolved)
    log = RLMetricsLog(out / "rl_metrics.jsonl", model, resume)
    result = train(
        model,
        PromptIndices(len(prompts)),
        collate_prompt_indices,
        train_config,
        out,
        resume=resume,
        callbacks=[log],
        description=f"rl ({config.advantage}, reward {reward_fn.name})",
    )
    processor.save_pretrained(result.final_dir)
    summary = {
        **resolved,
        "first_step": log.first,
        "last_step": log.last,
        "result": result.summary(),
    }
    atomic_write_json(out / "rl_summary.json", summary)
    return summary


class RLMetricsLog:
    """A loop callback: one JSON line per step with the loss and the RL model's last
    reward and KL statistics. A resumed run drops the lines of steps it will redo."""

    def __init__(self, path: Path, model: RLModel, resume: bool) -> None:
        self.path, self.model = path, model
        self.first: dict[str, Any] | None = None
        self.last: dict[str, Any] | None = None
        self._checked = False
        if not resume:
            path.write_text("", encoding="utf-8")

    def __call__(self, step: int, basics: dict[str, float]) -> None:
        import torch

        if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
            return  # the loop calls back on every process; the main one writes
        if not self._checked and self.path.is_file():
            kept = [
                line
                for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["step"] < step
            ]
            self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        self._checked = True
        record = {"step": step, "loss": basics["loss"], **self.model.last_stats}
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
        self.first = self.first or record
        self.last = record
