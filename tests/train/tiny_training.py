"""A tiny deterministic model and dataset for the training-loop tests, and a runnable
training script (`python tests/train/tiny_training.py OUT_DIR ...`) for the subprocess
tests (kill-and-resume, two-process DDP)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

NUM_FEATURES = 8


class TinyRegression(Dataset):
    """Fixed random inputs and targets: the same numbers in every process."""

    def __init__(self, num_samples: int = 64, seed: int = 1234) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(num_samples, NUM_FEATURES, generator=generator)
        self.targets = self.inputs @ torch.randn(NUM_FEATURES, 1, generator=generator)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"inputs": self.inputs[index], "targets": self.targets[index]}


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


class TinyModel(nn.Module):
    """Two linear layers; dropout makes the RNG part of the training state."""

    def __init__(self, dropout: float = 0.0, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(NUM_FEATURES, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": nn.functional.mse_loss(self.net(inputs), targets)}


def make_model(dropout: float = 0.0, seed: int = 0) -> TinyModel:
    torch.manual_seed(seed)
    return TinyModel(dropout)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def train_tiny(
    out_dir: Path,
    model: nn.Module | None = None,
    resume: bool | Path = False,
    num_samples: int = 64,
    evaluation: Any = None,
    **config_fields: Any,
) -> tuple[nn.Module, Any]:
    """Train a tiny model in this process; config fields default to a short, quiet run."""
    from ocelli.train import TrainConfig, train

    fields = {
        "max_steps": 6,
        "batch_size": 4,
        "lr": 1e-2,
        "log_every": 1,
        "tensorboard": False,
        **config_fields,
    }
    model = model if model is not None else make_model()
    result = train(
        model,
        TinyRegression(num_samples),
        collate,
        TrainConfig(**fields),
        out_dir,
        resume=resume,
        description="tiny",
        evaluation=evaluation,
    )
    return model, result


def tiny_evaluation(every: int) -> Any:
    """The mean loss on the dataset, with the rank that computed it; it draws random
    numbers too, which must not reach training."""
    from ocelli.train.validation import Evaluation

    def run(model: nn.Module) -> dict[str, Any]:
        torch.rand(3)
        data = collate([TinyRegression()[i] for i in range(len(TinyRegression()))])
        return {"val_loss": float(model(**data)["loss"]), "rank": int(os.environ.get("RANK", 0))}

    return Evaluation(every, run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--config", default="{}", help="TrainConfig fields as JSON")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--eval-every", type=int, default=0, help="validation every N steps")
    parser.add_argument(
        "--hang-after",
        type=int,
        default=None,
        help="after this step, write hanging.txt and sleep until killed",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from ocelli.config import from_dict
    from ocelli.train import TrainConfig, train

    config = from_dict(TrainConfig, json.loads(args.config))
    model = make_model(args.dropout)
    out_dir = Path(args.out_dir)

    def hang(step: int, metrics: dict[str, Any]) -> None:
        if args.hang_after is not None and step == args.hang_after:
            (out_dir / "hanging.txt").write_text(str(step))
            while True:
                time.sleep(1)

    result = train(
        model,
        TinyRegression(),
        collate,
        config,
        out_dir,
        resume=args.resume,
        callbacks=[hang],
        description="tiny",
        evaluation=tiny_evaluation(args.eval_every) if args.eval_every else None,
    )
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        from safetensors.torch import save_file

        save_file(weights(model), str(out_dir / "weights.safetensors"))
        (out_dir / "result.json").write_text(json.dumps(result.summary()))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
