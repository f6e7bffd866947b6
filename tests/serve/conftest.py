"""Shared by the serving tests: the generation tests' tiny random model (loaded by path,
since --import-mode=importlib keeps test folders off sys.path), live servers on
127.0.0.1 with a free port, and images as data URLs."""

from __future__ import annotations

import base64
import io
import runpy
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import uvicorn
from PIL import Image

from ocelli.serve import Engine, ServeConfig, create_app

_GENERATE = runpy.run_path(str(Path(__file__).resolve().parents[1] / "generate" / "conftest.py"))
model_dir = _GENERATE["model_dir"]
pipeline = _GENERATE["pipeline"]
image_paths = _GENERATE["image_paths"]

API_KEY = "test-key"
MODEL = "tiny"


class LiveServer:
    """An app served by uvicorn in a thread, on 127.0.0.1 and a port the OS picks."""

    def __init__(self, app) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def state(self):
        return self.app.state.server


def start_server(pipeline, fetcher=None, **options) -> LiveServer:
    """A live server for `pipeline` with test defaults overridden by `options`."""
    settings = {"api_keys": (API_KEY,), "served_model_name": MODEL, "max_tokens_limit": 64}
    config = ServeConfig(**{**settings, **options})
    engine = Engine(pipeline.model, pipeline.processor, max_batch_size=config.max_batch_size)
    return LiveServer(create_app(engine, config, fetcher=fetcher))


@pytest.fixture(scope="session")
def one_thread():
    """Tiny models gain nothing from a second torch thread on a 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def server(pipeline, one_thread):
    with start_server(
        pipeline,
        max_images_per_request=3,
        max_prompt_tokens=400,
        max_body_bytes=2 * 1024 * 1024,
        max_image_bytes=1024 * 1024,
    ) as live:
        yield live


@pytest.fixture
def client(server):
    import openai

    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)


def wait_until(condition, timeout: float = 10.0) -> bool:
    """Poll `condition` until it holds; False if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def png_bytes(seed: int = 0, size: int = 24) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid PNG header claiming width x height pixels, with almost no data: decoding
    it would allocate gigabytes, so the server must refuse it from the header."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )
