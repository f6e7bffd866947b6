"""Checks on local checkpoint directories, shared by every loader in ocelli.model.

ocelli loads only safetensors weights from local directories (no pickle, no remote
code, no downloads), and treats a checkpoint that leaves weights uninitialised as broken
rather than silently training from random values.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocelli.errors import CheckpointError
from ocelli.utils.io import read_json_object

SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# Everything ocelli passes to a Hugging Face from_pretrained.
SAFE_LOAD_KWARGS = {"trust_remote_code": False, "local_files_only": True, "use_safetensors": True}


def read_config(path: str | Path, what: str) -> dict[str, Any]:
    """The config.json of checkpoint directory `path`, or a CheckpointError saying why not."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"{what} checkpoint {path} is not a directory; give the local directory a "
            "save_pretrained() call wrote (ocelli does not download models)"
        )
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"{what} checkpoint {path} has no config.json; it is not a saved model directory"
        )
    config = read_json_object(config_path, "re-save the model")
    if "model_type" not in config:
        raise CheckpointError(
            f"{config_path} has no model_type; re-save the model with save_pretrained()"
        )
    return config


def require_safetensors(path: str | Path, what: str) -> None:
    path = Path(path)
    if any((path / name).is_file() for name in SAFETENSORS_FILES):
        return
    if any((path / name).is_file() for name in PICKLE_FILES):
        raise CheckpointError(
            f"{what} checkpoint {path} holds only pickle weights (pytorch_model.bin), which ocelli "
            "never loads; convert it once with model.save_pretrained(dir, safe_serialization=True) "
            "in a trusted environment"
        )
    raise CheckpointError(
        f"{what} checkpoint {path} has no weights (expected {' or '.join(SAFETENSORS_FILES)})"
    )


def load_checked(
    load: Callable[..., Any], path: str | Path, what: str, *args: Any, **kwargs: Any
) -> Any:
    """Call a from_pretrained-like `load(path, ...)` safely and fail on missing weights.
    A caller's own trust_remote_code/local_files_only/use_safetensors are overridden."""
    require_safetensors(path, what)
    ours = {*SAFE_LOAD_KWARGS, "output_loading_info"}
    kwargs = {key: value for key, value in kwargs.items() if key not in ours}
    try:
        model, info = load(str(path), *args, output_loading_info=True, **SAFE_LOAD_KWARGS, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:  # size mismatches, corrupt files
        raise CheckpointError(f"could not load {what} checkpoint {path}: {exc}") from None
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise CheckpointError(
            f"{what} checkpoint {path} lacks weights the model needs ({shown}); it was saved "
            "from a different architecture or configuration"
        )
    return model
