"""Serving: an OpenAI-compatible HTTP API over a continuous-batching engine.

    ocelli serve --model runs/quickstart/instruct --port 8000

or, in Python, `serve(model_dir, ServeConfig(...))`; `create_app` gives the FastAPI app
for an `Engine` built on any loaded model, which is what the tests use.

Names are imported on first use, so `ocelli --help` (which reads `ocelli.serve.cli`)
does not load torch and FastAPI."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_app": "ocelli.serve.app",
    "ServeConfig": "ocelli.serve.config",
    "Completion": "ocelli.serve.engine",
    "Engine": "ocelli.serve.engine",
    "Prompt": "ocelli.serve.engine",
    "ImageFetcher": "ocelli.serve.fetch",
    "is_public_address": "ocelli.serve.fetch",
    "build_engine": "ocelli.serve.runner",
    "serve": "ocelli.serve.runner",
    "SamplingParams": "ocelli.serve.sampling",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ocelli.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
