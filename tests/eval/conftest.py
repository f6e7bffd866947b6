"""Shared by the evaluation tests: a small bilingual world, the tiny random model of the
generation tests, and fake backends (an oracle that answers from the truth, a flaky one).
The world config and the tiny model come from the world and generation tests' conftests,
loaded by path because --import-mode=importlib keeps test folders off sys.path."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ocelli.eval.backends import Request, RequestError

TESTS = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


WORLD_CONFTEST = _load(TESTS / "world" / "conftest.py", "world_conftest_for_eval")
GENERATE_CONFTEST = _load(TESTS / "generate" / "conftest.py", "generate_conftest_for_eval")
CLI_CONFTEST = _load(TESTS / "cli" / "conftest.py", "cli_conftest_for_eval")
cli = CLI_CONFTEST.cli  # the `cli(...)` fixture: run `ocelli ...` in-process


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and lose much on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory):
    """12 images, both languages, labels, occlusion: every built-in task finds samples."""
    from ocelli.world import generate_dataset

    out = tmp_path_factory.mktemp("eval-world") / "test"
    generate_dataset(
        out, 12, seed=11, split="test", config=WORLD_CONFTEST.RICH_WORLD, progress=False
    )
    return out


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    model, processor = GENERATE_CONFTEST.tiny_model_and_processor()
    directory = tmp_path_factory.mktemp("eval-tiny-model")
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


class FakeBackend:
    """Answers with `answer(request)`; a returned Exception is a failed request."""

    def __init__(self, answer, name: str = "fake") -> None:
        self.answer = answer
        self.name = name
        self.calls: list[Request] = []

    def identity(self) -> dict:
        return {
            "model": self.name,
            "backend": "fake",
            "model_config_hash": self.name,
            "weights_hash": None,
        }

    def generation_settings(self) -> dict:
        return {"decoding": "fake"}

    def generate(self, requests):
        self.calls += requests
        return [self.answer(request) for request in requests]


def oracle(samples, transform=lambda sample: sample.truth) -> FakeBackend:
    """A backend answering each (images, prompt) with `transform(sample)`."""
    table = {(tuple(s.images), s.prompt): transform(s) for s in samples}
    return FakeBackend(lambda request: table[(tuple(request.images), request.prompt)], "oracle")


@pytest.fixture
def failing():
    return lambda message="server said no": RequestError(message)


class JSONHandler(BaseHTTPRequestHandler):
    """Base of the fake OpenAI-compatible servers: JSON replies, no request log."""

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]):
    """`handler` served on 127.0.0.1 in a thread: yields the base URL (http://host:port)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
