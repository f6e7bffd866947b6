"""Checkpoints of the training loop, written atomically and without pickle.

`out_dir/checkpoints/step-000123/` holds:
  model/                  weights: `save_pretrained` for transformers models, otherwise
                          `model.safetensors` of the state dict (tied tensors stored once)
  optimizer.safetensors   every tensor of the optimizer state, keyed `state.<param>.<name>`
  optimizer.json          param-group hyperparameters and any non-tensor state entries
  scheduler.json          the learning-rate scheduler's state (plain numbers)
  rng.safetensors         torch RNG states as uint8 tensors, keyed `rank<r>.torch_cpu`, ...
  rng.json                python `random` and numpy states per rank
  trainer_state.json      step, epoch, samples seen, config, provenance

Everything is tensors in safetensors or plain JSON, so opening a checkpoint never runs
code from it. A directory is built under a hidden temporary name and renamed into place,
so a `step-*` directory is either complete or absent; temporary leftovers of a crash are
hidden names that `clean_stale_dirs` removes.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, save_model
from torch import nn

from ocelli.errors import CheckpointError, ConfigError
from ocelli.utils.io import atomic_dir, atomic_write_json

STEP_DIR = re.compile(r"^step-(\d+)$")
CHECKPOINT_FILES = (
    "optimizer.safetensors",
    "optimizer.json",
    "scheduler.json",
    "rng.safetensors",
    "rng.json",
    "trainer_state.json",
)
RNG_TENSOR_KEYS = ("torch_cpu", "torch_cuda")  # the rest of an RNG state goes to JSON


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, path) of every `step-*` directory under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))
    ]
    return sorted(found)


def clean_stale_dirs(root: Path) -> list[Path]:
    """Remove hidden temporaries (`.step-*.tmp`, `.step-*.old`) a crashed save left behind."""
    removed = []
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith(".step-") and path.name.endswith((".tmp", ".old")):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def check_checkpoint(path: Path) -> dict[str, Any]:
    """Raise CheckpointError unless `path` is a complete checkpoint; return its trainer state."""
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a directory")
    missing = [name for name in CHECKPOINT_FILES if not (path / name).is_file()]
    if not any((path / "model").glob("*.safetensors")):
        missing.append("model/*.safetensors")
    if missing:
        raise CheckpointError(
            f"checkpoint {path} is incomplete (missing {', '.join(missing)}); it was not written "
            "by ocelli or was damaged afterwards: delete it to resume from the one before"
        )
    state = _read_json(path / "trainer_state.json", path)
    if not isinstance(state.get("step"), int):
        raise CheckpointError(f"checkpoint {path}: trainer_state.json has no integer 'step'")
    return state


def find_latest_checkpoint(root: Path) -> Path | None:
    """The newest checkpoint under `root` (checked for completeness), or None if there is none."""
    found = list_checkpoints(root)
    if not found:
        return None
    latest = found[-1][1]
    check_checkpoint(latest)
    return latest


def prune_checkpoints(root: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints (0 keeps all)."""
    if keep_last <= 0:
        return []
    removed = []
    for _, path in list_checkpoints(root)[:-keep_last]:
        # Renamed first so a crash mid-delete leaves a hidden temporary, not a broken step dir.
        doomed = path.with_name(f".{path.name}.deleting.tmp")
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(path)
    return removed


def save_checkpoint(
    root: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rng_by_rank: list[dict[str, Any]],
    trainer_state: dict[str, Any],
    save_with_model: Callable[[Path], None] | None = None,
) -> Path:
    """Write `root/step-XXXXXX` atomically; call on the main process only.
    `save_with_model(dir)` adds files beside the weights (a processor, so that the
    step's model/ loads like a final model)."""
    target = root / checkpoint_name(step)
    with atomic_dir(target) as tmp:
        save_model_weights(model, tmp / "model", for_resume=True)
        if save_with_model is not None:
            save_with_model(tmp / "model")
        tensors, meta = flatten_optimizer_state(optimizer.state_dict())
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        atomic_write_json(tmp / "optimizer.json", meta)
        atomic_write_json(
            tmp / "scheduler.json", _json_checked(scheduler.state_dict(), "scheduler")
        )
        save_rng_states(rng_by_rank, tmp)
        atomic_write_json(tmp / "trainer_state.json", trainer_state)
    return target


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    process_index: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore weights, optimizer and scheduler in place; return (trainer state, this rank's RNG)."""
    state = check_checkpoint(path)
    try:
        load_model_weights(model, path / "model")
        tensors = load_file(str(path / "optimizer.safetensors"))
        meta = _read_json(path / "optimizer.json", path)
        optimizer.load_state_dict(unflatten_optimizer_state(tensors, meta, optimizer))
        scheduler.load_state_dict(_read_json(path / "scheduler.json", path))
        rng = load_rng_state(path, process_index)
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise CheckpointError(f"checkpoint {path} could not be loaded: {exc}") from exc
    return state, rng


# --- model weights ---------------------------------------------------------------------


def _is_transformers_model(model: nn.Module) -> bool:
    if "transformers" not in sys.modules:  # not imported: cannot be one (and importing is slow)
        return False
    from transformers import PreTrainedModel

    # With adapters attached through transformers, save_pretrained writes only the adapters.
    return isinstance(model, PreTrainedModel) and not getattr(
        model, "_hf_peft_config_loaded", False
    )


def save_model_weights(model: nn.Module, directory: Path, for_resume: bool) -> None:
    """Weights into `directory`; for resuming they must hold the full state dict, as named in memory."""
    directory.mkdir(parents=True, exist_ok=True)
    if for_resume and _is_transformers_model(model):
        model.save_pretrained(directory, save_original_format=False)
    elif not for_resume and hasattr(model, "save_pretrained"):
        model.save_pretrained(directory)
    else:
        save_model(model, str(directory / "model.safetensors"), metadata={"format": "pt"})


def load_model_weights(model: nn.Module, directory: Path) -> None:
    """Load every safetensors file of `directory` into `model`; tied tensors may be stored once."""
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory} holds no .safetensors weights")
    loaded: dict[str, torch.Tensor] = {}
    for file in files:
        loaded.update(load_file(str(file)))
    expected = model.state_dict()
    unexpected = sorted(set(loaded) - set(expected))
    loaded_storages = {expected[k].untyped_storage().data_ptr() for k in loaded if k in expected}
    missing = sorted(
        k
        for k in set(expected) - set(loaded)
        if expected[k].untyped_storage().data_ptr() not in loaded_storages
    )
    reshaped = sorted(
        f"{k} {tuple(loaded[k].shape)} vs {tuple(expected[k].shape)}"
        for k in loaded
        if k in expected and loaded[k].shape != expected[k].shape
    )
    if unexpected or missing or reshaped:
        raise CheckpointError(
            f"weights in {directory} do not match the model: missing {_few(missing)}, "
            f"unexpected {_few(unexpected)}, other shapes {_few(reshaped)}; resume with the "
            "same model architecture"
        )
    model.load_state_dict(loaded, strict=False)


def _few(keys: list[str], limit: int = 5) -> str:
    if not keys:
        return "none"
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# --- optimizer -------------------------------------------------------------------------


def flatten_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for param_id, entries in state_dict["state"].items():
        for key, value in entries.items():
            name = f"state.{param_id}.{key}"
            if torch.is_tensor(value):
                tensors[name] = value.detach().cpu().contiguous()
            else:
                scalars[name] = value
    meta = {"param_groups": state_dict["param_groups"], "scalars": scalars}
    return tensors, _json_checked(meta, "optimizer")


def unflatten_optimizer_state(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Rebuild the state dict `optimizer.load_state_dict` expects from the two files."""
    groups = meta["param_groups"]
    current = optimizer.param_groups
    shapes = [len(g["params"]) for g in groups]
    if shapes != [len(g["params"]) for g in current]:
        raise CheckpointError(
            f"the checkpoint's optimizer has parameter groups of sizes {shapes}, this run has "
            f"{[len(g['params']) for g in current]}: resume with the same trainable parameters"
        )
    for saved, live in zip(groups, current, strict=True):
        for key, value in saved.items():  # JSON turned tuples (betas) into lists
            if isinstance(live.get(key), tuple) and isinstance(value, list):
                saved[key] = tuple(value)
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        _, param_id, key = name.split(".", 2)
        state.setdefault(int(param_id), {})[key] = value
    return {"state": state, "param_groups": groups}


# --- random number generators ----------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """This process's RNG states as JSON-able values (torch states as lists of bytes)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch_cpu": torch.get_rng_state().tolist(),
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state().tolist()
    return state


def gather_rng_states(accelerator: Any) -> list[dict[str, Any]]:
    """Every process's RNG state, on every process (sent as JSON bytes: no pickle on the wire)."""
    state = capture_rng_state()
    if accelerator.num_processes == 1:
        return [state]
    data = torch.frombuffer(bytearray(json.dumps(state).encode()), dtype=torch.uint8)
    sizes = accelerator.gather(torch.tensor([data.numel()], device=accelerator.device)).tolist()
    padded = torch.zeros(max(sizes), dtype=torch.uint8)  # gather needs equal shapes
    padded[: data.numel()] = data
    rows = accelerator.gather(padded.to(accelerator.device)).view(len(sizes), -1).cpu()
    return [json.loads(bytes(rows[rank, :size].tolist())) for rank, size in enumerate(sizes)]


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch_cpu"], dtype=torch.uint8))
    if "torch_cuda" in state and torch.cuda.is_available():
        # Initialise CUDA first: a seed queued before initialisation (by seed_everything) is
        # applied at initialisation, after any queued set_rng_state, and would overwrite it.
        torch.cuda.init()
        torch.cuda.set_rng_state(torch.tensor(state["torch_cuda"], dtype=torch.uint8))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_rng_states(rng_by_rank: list[dict[str, Any]], directory: Path) -> None:
    tensors, ranks = {}, []
    for rank, state in enumerate(rng_by_rank):
        for key in RNG_TENSOR_KEYS:
            if key in state:
                tensors[f"rank{rank}.{key}"] = torch.tensor(state[key], dtype=torch.uint8)
        ranks.append({k: v for k, v in state.items() if k not in RNG_TENSOR_KEYS})
    save_file(tensors, str(directory / "rng.safetensors"))
    atomic_write_json(
        directory / "rng.json", {"num_processes": len(ranks), "ranks": ranks}, indent=None
    )


def load_rng_state(path: Path, process_index: int) -> dict[str, Any]:
    meta = _read_json(path / "rng.json", path)
    ranks = meta["ranks"]
    rank = process_index
    if rank >= len(ranks):
        warnings.warn(
            f"checkpoint {path} was written by {len(ranks)} process(es); process "
            f"{process_index} restarts from rank 0's random state",
            stacklevel=2,
        )
        rank = 0
    tensors = load_file(str(path / "rng.safetensors"))
    state = dict(ranks[rank])
    for key in RNG_TENSOR_KEYS:
        if f"rank{rank}.{key}" in tensors:
            state[key] = tensors[f"rank{rank}.{key}"].tolist()
    return state


# --- final model and helpers -----------------------------------------------------------


def save_final_model(model: nn.Module, directory: Path, trainer_state: dict[str, Any]) -> Path:
    """The trained model in `directory` (atomic), loadable with the model's from_pretrained."""
    with atomic_dir(directory) as tmp:
        save_model_weights(model, tmp, for_resume=False)
        atomic_write_json(tmp / "trainer_state.json", trainer_state)
    return directory


def _read_json(file: Path, checkpoint: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint {checkpoint}: {file.name} is unreadable ({exc}); delete the checkpoint "
            "to resume from the one before"
        ) from exc


def _json_checked(obj: Any, what: str) -> Any:
    """Fail at save time (not at resume) if a state holds something JSON cannot store."""
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the {what} state cannot be stored as JSON: {exc}") from exc


# --- choosing where to resume ----------------------------------------------------------


def resolve_resume(root: Path, resume: bool | str | Path) -> Path | None:
    """The checkpoint a run starts from (None: from scratch) for `train(resume=...)`."""
    if resume is False:
        if list_checkpoints(root):
            raise ConfigError(
                f"{root} already holds checkpoints of an earlier run: resume it (resume=True, "
                "`--resume` on the command line) or train into a new output directory"
            )
        return None
    if resume is True:
        return find_latest_checkpoint(root)
    path = Path(resume)
    step = check_checkpoint(path)["step"]
    later = [p.name for s, p in list_checkpoints(root) if s > step]
    if later:  # they would outlive the new ones when pruning and win the next resume=True
        raise ConfigError(
            f"cannot resume from {path}: {root} has later checkpoints "
            f"({', '.join(later)}); delete them to continue from step {step}"
        )
    return path


def check_resumable(
    saved: dict[str, Any], now: dict[str, Any], total_steps: int, path: Path
) -> None:
    """Refuse to resume when the settings that fix the data order have changed."""
    changed = [f"{k} {saved.get(k)} -> {v}" for k, v in now.items() if saved.get(k) != v]
    if changed:
        raise ConfigError(
            f"cannot resume from {path}: {', '.join(changed)} changed, so the data order would "
            "not continue where it stopped; restore those settings or train into a new out_dir"
        )
    if saved["step"] > total_steps:
        raise ConfigError(
            f"cannot resume from {path}: its step {saved['step']} is past the "
            f"{total_steps} steps this config trains; raise max_steps"
        )
