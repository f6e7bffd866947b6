"""The generic training loop: any nn.Module whose forward returns a loss, on accelerate.

One process or many, with DDP over NCCL on GPUs or gloo on CPU: `torchrun
--nproc_per_node N script.py` or `accelerate launch --multi_gpu --num_processes N
script.py` (on CPU-only machines too; `accelerate launch --cpu` starts a single process).
Gradient accumulation, AdamW with named parameter groups, warm-up then cosine (or linear,
or constant) decay, clipping, bf16 autocast, checkpoints and exact resume.

Data order: every epoch is a permutation of the dataset drawn from (seed, epoch). An
optimizer step consumes the next `global_batch_size` indices of it; micro-batch k of
process r within the step is the slice starting at (k * num_processes + r) * batch_size.
So which samples step s sees depends only on the seed and the global batch size, not on
how that batch is split over processes and accumulation, and a resumed run continues
at exactly the step where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, Sampler

from ocelli.train import checkpoint as ckpt
from ocelli.train.progress import MetricsLog, ProgressDisplay
from ocelli.train.trainer_config import (
    ParamGroups,
    StepPlan,
    TrainConfig,
    build_optimizer,
    plan_steps,
)
from ocelli.train.validation import Evaluation, evaluation_line, run_isolated
from ocelli.utils import provenance, seed_everything

CHECKPOINTS_DIR = "checkpoints"
FINAL_DIR = "final"

StepCallback = Callable[[int, dict[str, float]], None]  # (step, {"loss", "lr", "grad_norm"})
TokenCounter = Callable[[Any], int]


@dataclass
class TrainResult:
    steps: int  # optimizer steps the model has now had, over every session
    start_step: int  # where this session began (0, or the step resumed from)
    final_loss: float | None  # loss of the last step run in this session
    metrics: dict[str, Any]  # the last record written to metrics.jsonl
    wall_time_s: float  # this session
    samples_per_s: float  # this session, all processes together
    tokens_per_s: float
    out_dir: Path
    final_dir: Path
    last_checkpoint: Path | None

    def summary(self) -> dict[str, Any]:
        """JSON-able form for run summaries."""
        return {
            key: str(value) if isinstance(value, Path) else value
            for key, value in asdict(self).items()
        }


@dataclass
class LoopState:
    """The counters a checkpoint must carry for a resumed run to continue seamlessly."""

    step: int = 0
    samples_seen: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    # Sums over the steps since the last metrics line, so a line's means stay exact on resume.
    window_loss: float = 0.0
    window_grad_norm: float = 0.0
    window_steps: int = 0

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any]) -> LoopState:
        return cls(**{key: saved[key] for key in asdict(cls()) if key in saved})


class StepSampler(Sampler[list[int]]):
    """Yields this process's micro-batches of indices, step after step, epoch after epoch."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        grad_accum_steps: int,
        num_processes: int,
        process_index: int,
        seed: int,
        start_step: int = 0,
    ) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.grad_accum_steps = grad_accum_steps
        self.num_processes = num_processes
        self.process_index = process_index
        self.seed = seed
        self.start_step = start_step
        self.global_batch_size = batch_size * grad_accum_steps * num_processes
        self.steps_per_epoch = num_samples // self.global_batch_size

    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)

    def __iter__(self) -> Iterator[list[int]]:
        step, epoch, order = self.start_step, -1, None
        while True:  # endless: the loop decides when to stop
            if step // self.steps_per_epoch != epoch:
                epoch = step // self.steps_per_epoch
                order = self.epoch_order(epoch)
            base = (step % self.steps_per_epoch) * self.global_batch_size
            for micro in range(self.grad_accum_steps):
                start = base + (micro * self.num_processes + self.process_index) * self.batch_size
                yield order[start : start + self.batch_size].tolist()
            step += 1


def train(
    model: nn.Module,
    dataset: Dataset,
    collate_fn: Callable[[list[Any]], Any],
    config: TrainConfig,
    out_dir: str | Path,
    param_groups: ParamGroups | None = None,
    resume: bool | str | Path = False,
    callbacks: Sequence[StepCallback] | None = None,
    count_tokens: TokenCounter | None = None,
    description: str = "train",
    evaluation: Evaluation | None = None,
    save_with_model: Callable[[Path], None] | None = None,
) -> TrainResult:
    """Train `model` in place on `dataset`; checkpoints and metrics go to `out_dir`.

    `model(**batch)` must return an object or mapping with a scalar `loss`. Parameter
    groups map a name to (parameters, learning rate); without them every parameter with
    requires_grad trains at `config.lr`. `resume=True` continues from the newest
    checkpoint in `out_dir/checkpoints` (starting fresh if there is none); a path resumes
    from that checkpoint. `count_tokens(batch)` feeds tokens/s (by default the sum of
    `attention_mask`, else the size of `input_ids`). Callbacks run on every process
    after every optimizer step. `config.packing` swaps a `PadCollator` for its packing
    counterpart (ocelli.data.packing), which brings its own token count.
    `config.compile` compiles the LM's decoder layers in place (ocelli.train.compile).
    `evaluation` runs on the main process only, the others waiting for it.
    `save_with_model(dir)` writes files beside each checkpoint's weights (a processor).
    """
    if config.packing:
        from ocelli.data.packing import packed_collation

        collate_fn, count_tokens = packed_collation(collate_fn, config.pack_max_tokens, model)
    if config.compile:
        from ocelli.train.compile import compile_language_model_layers

        compile_language_model_layers(model)
    accelerator = _make_accelerator(config)
    out_dir, root = Path(out_dir), Path(out_dir) / CHECKPOINTS_DIR
    plan = plan_steps(config, len(dataset), accelerator.num_processes)
    seed_everything(config.seed + accelerator.process_index)  # dropout differs across ranks
    if accelerator.is_main_process:
        ckpt.clean_stale_dirs(root)
    _wait_for_everyone(accelerator)
    start_from = ckpt.resolve_resume(root, resume)
    optimizer, scheduler = build_optimizer(model, param_groups, config, plan)
    run = _Run(accelerator, model, optimizer, scheduler, config, plan, out_dir, description)
    run.count_tokens = count_tokens or default_token_count
    run.callbacks = list(callbacks or [])
    run.evaluation = evaluation
    run.save_with_model = save_with_model
    rng = None
    if start_from is not None:
        saved, rng = ckpt.load_checkpoint(
            start_from, model, optimizer, scheduler, accelerator.process_index
        )
        ckpt.check_resumable(
            saved, _data_order_settings(config, plan), plan.total_steps, start_from
        )
        run.state = LoopState.from_saved(saved)
    run.batches = _micro_batches(dataset, collate_fn, config, accelerator, run.state.step)
    if rng is not None:
        # Restored last, right before the first step, so nothing above consumes it.
        ckpt.restore_rng_state(rng)
    return run.execute(resumed=start_from is not None)


def _data_order_settings(config: TrainConfig, plan: StepPlan) -> dict[str, int]:
    """What fixes which samples each step sees; a resumed run must not change it."""
    return {
        "seed": config.seed,
        "global_batch_size": plan.global_batch_size,
        "num_samples": plan.num_samples,
    }


def _make_accelerator(config: TrainConfig) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, GradientAccumulationPlugin

    return Accelerator(
        # Forced CPU mode is what lets accelerate run several CPU processes over gloo.
        cpu=not torch.cuda.is_available(),
        # bf16 is applied with torch.autocast in the step: accelerate's mixed precision is
        # fixed once per process, and each stage of a recipe may choose differently.
        mixed_precision="no",
        # Our sampler is endless, so accumulation must count micro-batches, not epoch ends.
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=config.grad_accum_steps, sync_with_dataloader=False
        ),
        kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=config.ddp_find_unused_parameters)
        ],
    )


def default_token_count(batch: Any) -> int:
    if isinstance(batch, Mapping):
        if torch.is_tensor(batch.get("attention_mask")):
            return int(batch["attention_mask"].sum())
        if torch.is_tensor(batch.get("input_ids")):
            return batch["input_ids"].numel()
    return 0


def _micro_batches(
    dataset: Dataset, collate_fn: Callable, config: TrainConfig, accelerator: Any, start_step: int
) -> Iterator[Any]:
    sampler = StepSampler(
        len(dataset),
        config.batch_size,
        config.grad_accum_steps,
        accelerator.num_processes,
        accelerator.process_index,
        config.seed,
        start_step,
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_fn,
        num_workers=config.num_workers,
        pin_memory=accelerator.device.type == "cuda",
        # Worker seeds come from this generator, not the global RNG, which must stay
        # untouched for a resumed run to draw the same dropout masks.
        generator=torch.Generator().manual_seed(config.seed),
    )
    return iter(loader)


def _loss_of(outputs: Any) -> torch.Tensor:
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
    if not torch.is_tensor(loss):
        raise TypeError(
            f"model(**batch) returned {type(outputs).__name__} without a tensor "
            "`loss`; the training loop needs outputs.loss (or outputs['loss'])"
        )
    return loss


@dataclass
class _StepStats:
    loss: float
    grad_norm: float
    lr: float
    tokens: int
    group_lrs: dict[str, float] = field(default_factory=dict)


class _Meter:
    """Samples and tokens per second since `reset`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.began, self.samples, self.tokens = time.perf_counter(), 0, 0

    def add(self, samples: int, tokens: int) -> None:
        self.samples += samples
        self.tokens += tokens

    def rates(self) -> dict[str, float]:
        seconds = max(time.perf_counter() - self.began, 1e-9)
        return {"samples_per_s": self.samples / seconds, "tokens_per_s": self.tokens / seconds}


class _Run:
    """One training session: the objects it drives and the per-step bookkeeping."""

    def __init__(
        self,
        accelerator: Any,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: LambdaLR,
        config: TrainConfig,
        plan: StepPlan,
        out_dir: Path,
        description: str,
    ) -> None:
        self.accelerator, self.raw_model = accelerator, model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.config, self.plan, self.out_dir, self.description = config, plan, out_dir, description
        self.state = LoopState()
        self.count_tokens: TokenCounter = default_token_count
        self.callbacks: list[StepCallback] = []
        self.evaluation: Evaluation | None = None
        self.save_with_model: Callable[[Path], None] | None = None
        self.batches: Iterator[Any] = iter(())
        self.last_record: dict[str, Any] = {}
        self.session, self.window = _Meter(), _Meter()

    def execute(self, resumed: bool) -> TrainResult:
        """Run the remaining steps, then the last checkpoint and the final model."""
        main, config = self.accelerator.is_main_process, self.config
        self.start_step = self.last_saved = self.state.step
        self.trainable = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.model, self.optimizer = self.accelerator.prepare(self.raw_model, self.optimizer)
        start = self.start_step if resumed else None
        metrics = MetricsLog(self.out_dir, start, config.tensorboard) if main else None
        display = ProgressDisplay(
            self.description, self.plan.total_steps, self.start_step, config.log_every, enabled=main
        )
        if resumed:
            display.message(f"[{self.description}] resumed from step {self.start_step}")
        was_training, final_loss = self.raw_model.training, None
        self.raw_model.train()
        self.session.reset()
        self.window.reset()
        try:
            while self.state.step < self.plan.total_steps:
                stats = self._optimizer_step()
                final_loss = stats.loss
                self._after_step(stats, metrics, display)
            self._finish()
        finally:
            display.close()
            if metrics is not None:
                metrics.close()
            self.raw_model.train(was_training)
        return self._result(final_loss)

    def _optimizer_step(self) -> _StepStats:
        accelerator, config = self.accelerator, self.config
        autocast = self._autocast()
        lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        loss_sum, tokens, grad_norm = torch.zeros((), device=accelerator.device), 0, None
        for _ in range(config.grad_accum_steps):
            batch = next(self.batches)
            tokens += self.count_tokens(batch)
            batch = _to_device(batch, accelerator.device)
            with accelerator.accumulate(self.model):
                with autocast:
                    loss = _loss_of(self.model(**batch)).float()
                accelerator.backward(loss)  # divides by grad_accum_steps
                loss_sum += loss.detach()
                if accelerator.sync_gradients:
                    grad_norm = self._clip()
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
        if grad_norm is None:  # accelerate's micro-step counter and ours disagree: a bug
            raise RuntimeError("gradient accumulation did not sync on the last micro-batch")
        totals = accelerator.reduce(
            torch.stack(
                [
                    loss_sum.double() / config.grad_accum_steps,
                    torch.tensor(tokens, dtype=torch.float64, device=accelerator.device),
                ]
            ),
            "sum",
        )
        return _StepStats(
            loss=totals[0].item() / accelerator.num_processes,
            grad_norm=grad_norm,
            lr=next(iter(lrs.values())),
            tokens=int(totals[1].item()),
            group_lrs={k: v for k, v in lrs.items() if not k.endswith(".no_decay")},
        )

    def _autocast(self) -> Any:
        if self.config.mixed_precision == "bf16":
            return torch.autocast(self.accelerator.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _clip(self) -> float:
        max_norm = self.config.max_grad_norm or float("inf")  # inf: measure without clipping
        return float(self.accelerator.clip_grad_norm_(self.trainable, max_norm))

    def _after_step(
        self, stats: _StepStats, metrics: MetricsLog | None, display: ProgressDisplay
    ) -> None:
        state, plan = self.state, self.plan
        state.step += 1
        state.samples_seen += plan.global_batch_size
        state.tokens_seen += stats.tokens
        state.window_loss += stats.loss
        state.window_grad_norm += stats.grad_norm
        state.window_steps += 1
        self.session.add(plan.global_batch_size, stats.tokens)
        self.window.add(plan.global_batch_size, stats.tokens)
        basics = {"loss": stats.loss, "lr": stats.lr, "grad_norm": stats.grad_norm}
        display.update(state.step, {**basics, **self.session.rates()})
        for callback in self.callbacks:
            callback(state.step, dict(basics))
        if state.step % self.config.log_every == 0 or state.step == plan.total_steps:
            self._log(stats, metrics)
        if self._evaluation_due():
            self._evaluate(metrics, display)
        if self.config.save_every and state.step % self.config.save_every == 0:
            self._save()

    def _log(self, stats: _StepStats, metrics: MetricsLog | None) -> None:
        state = self.state
        record = {
            "step": state.step,
            "epoch": round(state.step / self.plan.steps_per_epoch, 4),
            "loss": state.window_loss / state.window_steps,  # mean since the previous line
            "lr": stats.lr,
            "grad_norm": state.window_grad_norm / state.window_steps,
            **self.window.rates(),
            "elapsed": self._elapsed(),
        }
        if len(stats.group_lrs) > 1:
            record.update({f"lr/{name}": lr for name, lr in stats.group_lrs.items()})
        self.last_record = record
        if metrics is not None:
            metrics.write(record)
        state.window_loss, state.window_grad_norm, state.window_steps = 0.0, 0.0, 0
        self.window.reset()

    def _evaluation_due(self) -> bool:
        if self.evaluation is None or self.evaluation.every <= 0:
            return False
        step = self.state.step
        return step % self.evaluation.every == 0 or step == self.plan.total_steps

    def _evaluate(self, metrics: MetricsLog | None, display: ProgressDisplay) -> None:
        """One evaluation on the main process, before this step's checkpoint so that a
        resumed run keeps its record and does not repeat it."""
        if self.accelerator.is_main_process:
            with self._autocast():
                results = run_isolated(self.evaluation.run, self.raw_model)
            record = {"step": self.state.step, **results}
            if metrics is not None:
                metrics.write(record)
            display.message(evaluation_line(self.description, record))
        _wait_for_everyone(self.accelerator)

    def _save(self) -> None:
        accelerator, root = self.accelerator, self.out_dir / CHECKPOINTS_DIR
        rng_by_rank = ckpt.gather_rng_states(accelerator)
        if accelerator.is_main_process:
            ckpt.save_checkpoint(
                root,
                self.state.step,
                accelerator.unwrap_model(self.model),
                self.optimizer,
                self.scheduler,
                rng_by_rank,
                self._trainer_state(),
                self.save_with_model,
            )
            ckpt.prune_checkpoints(root, self.config.keep_last)
        _wait_for_everyone(accelerator)
        self.last_saved = self.state.step

    def _finish(self) -> None:
        if self.last_saved != self.state.step:
            self._save()
        if self.accelerator.is_main_process:
            ckpt.save_final_model(
                self.accelerator.unwrap_model(self.model),
                self.out_dir / FINAL_DIR,
                self._trainer_state(),
            )
        _wait_for_everyone(self.accelerator)

    def _elapsed(self) -> float:
        """Training time over every session of this run, not just the current one."""
        return self.state.elapsed_s + time.perf_counter() - self.session.began

    def _trainer_state(self) -> dict[str, Any]:
        state, plan = self.state, self.plan
        return {
            **asdict(state),
            "elapsed_s": self._elapsed(),
            "epoch": state.step // plan.steps_per_epoch,
            "total_steps": plan.total_steps,
            "steps_per_epoch": plan.steps_per_epoch,
            "global_batch_size": plan.global_batch_size,
            "num_processes": self.accelerator.num_processes,
            **_data_order_settings(self.config, plan),
            "description": self.description,
            "config": asdict(self.config),
            "provenance": provenance(),
        }

    def _result(self, final_loss: float | None) -> TrainResult:
        wall_time_s = time.perf_counter() - self.session.began
        rates = self.session.rates()
        saved = self.last_saved > 0
        return TrainResult(
            steps=self.state.step,
            start_step=self.start_step,
            final_loss=final_loss,
            metrics=self.last_record,
            wall_time_s=wall_time_s,
            samples_per_s=rates["samples_per_s"],
            tokens_per_s=rates["tokens_per_s"],
            out_dir=self.out_dir,
            final_dir=self.out_dir / FINAL_DIR,
            last_checkpoint=self._checkpoint_dir(self.last_saved) if saved else None,
        )

    def _checkpoint_dir(self, step: int) -> Path:
        return self.out_dir / CHECKPOINTS_DIR / ckpt.checkpoint_name(step)


def _wait_for_everyone(accelerator: Any) -> None:
    # accelerate's barrier names a GPU even for CPU processes, which fails on a machine
    # with fewer GPUs than processes; gloo's own barrier for CPU processes needs none.
    if accelerator.num_processes > 1 and accelerator.device.type == "cpu":
        torch.distributed.barrier()
    else:
        accelerator.wait_for_everyone()


def _to_device(batch: Any, device: torch.device) -> Any:
    from accelerate.utils import send_to_device

    return send_to_device(batch, device)
