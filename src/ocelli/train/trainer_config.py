"""`TrainConfig`: every knob of the generic training loop, and what it implies.

A stage's YAML section `train:` loads into this dataclass through `ocelli.config.from_dict`
(unknown keys are errors). What follows from a config lives here too, testable on its
own: the step plan (steps per epoch, total, warm-up), the learning-rate curve, and the
AdamW optimizer with its named parameter groups.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ocelli.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where the optimizer is built, not to read a config
    import torch
    from torch import nn

Schedule = Literal["cosine", "constant", "linear"]
MixedPrecision = Literal["no", "bf16"]


@dataclass
class TrainConfig:
    lr: float = 1e-4  # default rate; named parameter groups may carry their own
    weight_decay: float = 0.0  # applied to matrices only; biases and norm gains never decay
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    warmup_ratio: float | None = None  # fraction of the total steps; exclusive with warmup_steps
    schedule: Schedule = "cosine"
    min_lr_ratio: float = 0.1  # floor of the cosine/linear decay, as a fraction of each lr
    max_steps: int | None = None  # optimizer steps; exclusive with epochs
    epochs: int | None = None  # used when max_steps is not set; neither set means one epoch
    batch_size: int = 8  # per process and per micro-batch
    grad_accum_steps: int = 1
    max_grad_norm: float | None = 1.0  # None or 0 disables clipping (the norm is still logged)
    mixed_precision: MixedPrecision = "no"
    seed: int = 0
    log_every: int = 10
    save_every: int = 0  # 0 saves only at the end
    keep_last: int = 2  # checkpoints kept in out_dir/checkpoints; 0 keeps all
    num_workers: int = 0
    ddp_find_unused_parameters: bool = False  # needed when some trainable params get no grad
    tensorboard: bool = True  # only used when the tensorboard package is installed
    # Sequence packing (ocelli.data.packing): each batch's samples end to end in rows of
    # about pack_max_tokens tokens instead of padded to the longest; same samples per step.
    packing: bool = False
    pack_max_tokens: int = 1024
    # torch.compile the LM's decoder layers (ocelli.train.compile): a one-off compile;
    # little or no gain measured on CPU for the tiny models, so off by default.
    compile: bool = False

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # YAML gives lists; JSON round trips give lists too
        problems = _problems(self)
        if problems:
            raise ConfigError("invalid train config: " + "; ".join(problems))

    def global_batch_size(self, num_processes: int) -> int:
        return self.batch_size * self.grad_accum_steps * num_processes


def _problems(config: TrainConfig) -> list[str]:
    checks = [
        (config.lr > 0, f"lr must be > 0, got {config.lr}"),
        (config.weight_decay >= 0, f"weight_decay must be >= 0, got {config.weight_decay}"),
        (
            len(config.betas) == 2 and all(0 <= b < 1 for b in config.betas),
            f"betas must be two numbers in [0, 1), got {list(config.betas)}",
        ),
        (config.warmup_steps >= 0, f"warmup_steps must be >= 0, got {config.warmup_steps}"),
        (
            config.warmup_ratio is None or 0 <= config.warmup_ratio < 1,
            f"warmup_ratio must be in [0, 1), got {config.warmup_ratio}",
        ),
        (
            config.warmup_ratio is None or config.warmup_steps == 0,
            "set warmup_steps or warmup_ratio, not both",
        ),
        (
            config.schedule in ("cosine", "constant", "linear"),
            f"schedule must be cosine, constant or linear, got {config.schedule!r}",
        ),
        (
            0 <= config.min_lr_ratio <= 1,
            f"min_lr_ratio must be in [0, 1], got {config.min_lr_ratio}",
        ),
        (
            config.max_steps is None or config.max_steps > 0,
            f"max_steps must be > 0, got {config.max_steps}",
        ),
        (config.epochs is None or config.epochs > 0, f"epochs must be > 0, got {config.epochs}"),
        (config.max_steps is None or config.epochs is None, "set max_steps or epochs, not both"),
        (config.batch_size > 0, f"batch_size must be > 0, got {config.batch_size}"),
        (
            config.grad_accum_steps > 0,
            f"grad_accum_steps must be > 0, got {config.grad_accum_steps}",
        ),
        (
            config.max_grad_norm is None or config.max_grad_norm >= 0,
            f"max_grad_norm must be >= 0 or null, got {config.max_grad_norm}",
        ),
        (
            config.mixed_precision in ("no", "bf16"),
            f"mixed_precision must be 'no' or 'bf16', got {config.mixed_precision!r}",
        ),
        (config.log_every > 0, f"log_every must be > 0, got {config.log_every}"),
        (
            config.save_every >= 0,
            f"save_every must be >= 0 (0: only at the end), got {config.save_every}",
        ),
        (config.keep_last >= 0, f"keep_last must be >= 0 (0: keep all), got {config.keep_last}"),
        (config.num_workers >= 0, f"num_workers must be >= 0, got {config.num_workers}"),
        (
            config.pack_max_tokens > 0,
            f"pack_max_tokens must be > 0, got {config.pack_max_tokens}",
        ),
        (
            isinstance(config.compile, bool),
            f"compile must be true or false, got {config.compile!r}",
        ),
    ]
    return [message for ok, message in checks if not ok]


@dataclass(frozen=True)
class StepPlan:
    """How many optimizer steps a run makes and how they split into epochs."""

    num_samples: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    global_batch_size: int


def plan_steps(config: TrainConfig, num_samples: int, num_processes: int) -> StepPlan:
    """Steps per epoch (incomplete global batches are dropped), total and warm-up steps."""
    global_batch = config.global_batch_size(num_processes)
    steps_per_epoch = num_samples // global_batch
    if steps_per_epoch == 0:
        raise ConfigError(
            f"the dataset has {num_samples} samples, fewer than one global batch of {global_batch} "
            f"(batch_size {config.batch_size} x grad_accum_steps {config.grad_accum_steps} x "
            f"{num_processes} process(es)); lower batch_size or grad_accum_steps"
        )
    if config.max_steps is not None:
        total = config.max_steps
    else:
        total = (config.epochs or 1) * steps_per_epoch
    if config.warmup_ratio is not None:
        warmup = round(config.warmup_ratio * total)
    else:
        warmup = config.warmup_steps
    return StepPlan(num_samples, steps_per_epoch, total, min(warmup, total), global_batch)


def lr_multiplier(
    step: int, total_steps: int, warmup_steps: int, schedule: str, min_lr_ratio: float
) -> float:
    """Factor applied to each group's learning rate for optimizer step `step` (0-based).

    Linear warm-up reaches the full rate at the last warm-up step (no step is wasted at
    lr 0); cosine and linear decay then reach `min_lr_ratio` at `total_steps`.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    if schedule == "linear":
        shape = 1.0 - progress
    else:
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_lr_ratio + (1.0 - min_lr_ratio) * shape


# {"connector": (parameters, lr), ...}; frozen parameters are simply left out
ParamGroups = Mapping[str, tuple[Sequence["nn.Parameter"], float]]


def build_optimizer(
    model: nn.Module, param_groups: ParamGroups | None, config: TrainConfig, plan: StepPlan
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the groups, and the warm-up + decay schedule stepped once per optimizer step.

    The fused AdamW kernel (one pass over each tensor instead of a dozen) where every
    parameter allows it: the same update, computed in fewer passes."""
    import torch

    groups = build_param_groups(model, param_groups, config)
    optimizer = torch.optim.AdamW(
        groups,
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        fused=all(_fusable(p) for group in groups for p in group["params"]),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_multiplier(
            step, plan.total_steps, plan.warmup_steps, config.schedule, config.min_lr_ratio
        ),
    )
    return optimizer, scheduler


def _fusable(parameter: torch.Tensor) -> bool:
    import torch

    return parameter.device.type in ("cpu", "cuda") and parameter.dtype in (
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.float64,
    )


def build_param_groups(
    model: nn.Module, param_groups: ParamGroups | None, config: TrainConfig
) -> list[dict[str, Any]]:
    """AdamW groups: each named group is split so vectors (biases, norm gains) never decay."""
    if param_groups is None:
        param_groups = {"model": ([p for p in model.parameters() if p.requires_grad], config.lr)}
    if not param_groups:
        raise ConfigError("param_groups is empty: name at least one group of parameters to train")
    groups, seen = [], set()
    for name, (params, lr) in param_groups.items():
        params = list(params)
        frozen = sum(1 for p in params if not p.requires_grad)
        if not params or frozen:
            raise ConfigError(
                f"parameter group {name!r} has {len(params)} parameters, {frozen} of them frozen: "
                "pass only parameters with requires_grad=True (frozen ones are simply left out)"
            )
        if seen & {id(p) for p in params}:
            raise ConfigError(f"parameter group {name!r} repeats parameters of an earlier group")
        seen |= {id(p) for p in params}
        matrices = [p for p in params if p.ndim >= 2]
        vectors = [p for p in params if p.ndim < 2]
        if matrices:
            groups.append(_group(name, matrices, lr, config.weight_decay))
        if vectors:
            groups.append(_group(f"{name}.no_decay", vectors, lr, 0.0))
    stray = sum(1 for p in model.parameters() if p.requires_grad and id(p) not in seen)
    if stray:
        warnings.warn(
            f"{stray} parameter tensors require grad but are in no group: they will get "
            "gradients but never be updated; freeze them or add them to a group",
            stacklevel=3,
        )
    return groups


def _group(name: str, params: list, lr: float, weight_decay: float) -> dict[str, Any]:
    return {"params": params, "lr": float(lr), "weight_decay": weight_decay, "name": name}
