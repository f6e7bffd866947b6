"""Alignment runs on ocelli's training loop: DPO/IPO from a saved SFT model directory.

The output directory has the loop's usual layout (checkpoints/, metrics.jsonl,
final/); `final/` is a normal ocelli model directory with its processor, so
`ocelli.load(out / "final")` chats with the aligned model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ocelli.align.batches import PairCollator, PreferenceDataset
from ocelli.align.dpo import DPOConfig, DPOModel, frozen_copy
from ocelli.align.pairs import load_pairs
from ocelli.errors import CheckpointError
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
