"""Running the server: load the model, build the engine and app, serve with uvicorn.

SIGTERM (or Ctrl-C) drains: the server stops accepting connections, answers 503 to new
requests on open ones, lets in-flight requests (streams included) finish within
`drain_timeout_s`, then stops the engine and exits 0."""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType

import torch
import uvicorn

from ocelli.serve.app import ServerState, create_app
from ocelli.serve.config import ServeConfig
from ocelli.serve.engine import Engine

log = logging.getLogger("ocelli.serve")


class DrainingServer(uvicorn.Server):
    """uvicorn's server, marking the app as draining the moment a signal arrives."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.state.draining = True
        # uvicorn's own handler also records the signal to re-raise it after shutdown,
        # so the process would die by SIGTERM; a completed drain should exit 0 instead.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting for in-flight requests
        else:
            self.should_exit = True


def build_engine(model_dir: str | os.PathLike, config: ServeConfig, device: str = "cpu") -> Engine:
    from ocelli.generate import load

    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    pipeline = load(model_dir, device=device)
    return Engine(
        pipeline.model,
        pipeline.processor,
        max_batch_size=config.max_batch_size,
        admission_wait_steps=config.admission_wait_steps,
    )


def serve(model_dir: str | os.PathLike, config: ServeConfig, device: str = "cpu") -> int:
    """Serve `model_dir` until a signal; returns the process's exit status."""
    engine = build_engine(model_dir, config, device)
    app = create_app(engine, config)
    if not config.api_keys and config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving on %s without API keys: anyone who can reach it can use it", config.host
        )
    server = DrainingServer(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            timeout_graceful_shutdown=int(config.drain_timeout_s),
            log_level="info",
        ),
        app.state.server,
    )
    server.run()
    return 0
