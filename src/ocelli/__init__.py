"""ocelli: build, train, evaluate and serve multimodal large language models."""

from typing import Any

__version__ = "0.1.0"


def load(path: str, device: str = "cpu", dtype: Any = None) -> Any:
    """Load a saved model directory for chat: `ocelli.load(dir).chat(image, question)`."""
    from ocelli.generate import load as load_pipeline

    return load_pipeline(path, device=device, dtype=dtype)


__all__ = ["__version__", "load"]
