"""`ocelli serve` and `ocelli ui`: their flags, and flags to a ServeConfig. Light to import: `ocelli --help`
builds this parser without loading torch or FastAPI."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ocelli.serve.config import LIMITS, ServeConfig

API_KEY_ENV = "OCELLI_API_KEY"
UI_PORT = 7860  # Gradio's usual port
UI_PATH = "/ui"


def add_serve_parser(
    sub: argparse._SubParsersAction,
    positive_int: Callable[[str], int],
    positive_float: Callable[[str], float],
) -> None:
    defaults = ServeConfig()
    serve = sub.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API",
        description="Serve --model at http://HOST:PORT/v1 (chat completions, models), "
        "/health, /metrics and the web chat at /ui. See docs/serving.md.",
    )
    _add_server_flags(serve, defaults.port, positive_int, positive_float)
    serve.add_argument("--no-ui", action="store_true", help="do not serve the web chat at /ui")
    ui = sub.add_parser(
        "ui",
        help="chat with a model in the browser (a Gradio page)",
        description="Serve the web chat for --model at http://HOST:PORT/ui (and the API at "
        "/v1, as `ocelli serve` does). See docs/serving.md.",
    )
    _add_server_flags(ui, UI_PORT, positive_int, positive_float)


def _add_server_flags(
    parser: argparse.ArgumentParser,
    port: int,
    positive_int: Callable[[str], int],
    positive_float: Callable[[str], float],
) -> None:
    defaults = ServeConfig()
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        help=f"accepted key (repeatable; also ${API_KEY_ENV}, comma-separated)",
    )
    parser.add_argument("--served-model-name", default=None, help="default: the directory name")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    parser.add_argument("--drain-timeout", type=positive_float, default=defaults.drain_timeout_s)
    parser.add_argument(
        "--allow-image-urls", action="store_true", help="fetch http(s) images from listed hosts"
    )
    parser.add_argument(
        "--image-url-host",
        action="append",
        default=[],
        help="host images may come from (repeatable; *.example.com for subdomains)",
    )
    parser.add_argument(
        "--admission-wait-steps",
        type=int,
        default=defaults.admission_wait_steps,
        help="decode steps newcomers may wait to be prefilled together (0: never wait)",
    )
    for name in LIMITS:
        default = getattr(defaults, name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=positive_int,
            default=None,
            help=f"default {default if default is not None else 'the model context'}",
        )


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The ServeConfig the flags describe. Keys may also come from $OCELLI_API_KEY, which
    keeps them out of the process list."""
    keys = list(args.api_key or [])
    keys += [k.strip() for k in os.environ.get(API_KEY_ENV, "").split(",") if k.strip()]
    limits = {name: getattr(args, name) for name in LIMITS if getattr(args, name) is not None}
    return ServeConfig(
        host=args.host,
        port=args.port,
        api_keys=tuple(keys),
        served_model_name=args.served_model_name or Path(args.model).resolve().name,
        drain_timeout_s=args.drain_timeout,
        allow_image_urls=args.allow_image_urls,
        image_url_hosts=tuple(args.image_url_host or ()),
        torch_threads=args.threads,
        admission_wait_steps=args.admission_wait_steps,
        ui_path=None if getattr(args, "no_ui", False) else UI_PATH,
        **limits,
    )


def serve_command(args: argparse.Namespace) -> int:
    from ocelli.serve.runner import serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    return serve(args.model, config_from_args(args), device=args.device)
