"""The openai: backend against a minimal OpenAI-compatible server started here on
127.0.0.1: request shape, API key, retries of server errors, timeouts, unreachable."""

import base64
import json
import time

import pytest

from ocelli.errors import ConfigError
from ocelli.eval.backends import OpenAIBackend, Request, RequestError, make_backend
from ocelli.eval.harness import evaluate
from ocelli.eval.runner import prepare
from ocelli.eval.tasks import resolve_tasks

from .conftest import JSONHandler, serving


class FakeOpenAI(JSONHandler):
    answers: dict = {}
    failures: dict = {}  # prompt -> how many times to answer 500 first
    delay_prompts: set = set()
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, self.headers.get("Authorization"), body))
        if self.headers.get("Authorization") != "Bearer sk-test":
            return self._send(401, {"error": {"message": "bad key"}})
        parts = body["messages"][0]["content"]
        prompt = parts[-1]["text"]
        assert parts[0]["type"] == "image_url"
        assert base64.b64decode(parts[0]["image_url"]["url"].split(",", 1)[1])[:4] == b"\x89PNG"
        if type(self).failures.get(prompt, 0) > 0:
            type(self).failures[prompt] -= 1
            return self._send(500, {"error": {"message": "overloaded"}})
        if prompt in type(self).delay_prompts:
            time.sleep(1.0)
        reply = {
            "choices": [
                {"message": {"role": "assistant", "content": type(self).answers.get(prompt, "no")}}
            ]
        }
        return self._send(200, reply)


@pytest.fixture
def server():
    FakeOpenAI.answers, FakeOpenAI.failures, FakeOpenAI.delay_prompts, FakeOpenAI.seen = (
        {},
        {},
        set(),
        [],
    )
    with serving(FakeOpenAI) as url:
        yield f"{url}/v1"


def test_evaluation_through_an_openai_compatible_server(server, world_dir, tmp_path):
    (run,) = prepare(resolve_tasks("pope_popular"), world_dir, 6)
    FakeOpenAI.answers = {s.prompt: s.truth.capitalize() + "." for s in run.samples}
    FakeOpenAI.failures = {run.samples[0].prompt: 1}  # one 500, then fine
    results = evaluate(
        f"openai:{server}",
        "pope_popular",
        tmp_path,
        world_dir,
        limit=6,
        api_model="tiny",
        api_key="sk-test",
        timeout=5,
        progress=False,
    )
    task = results["tasks"]["pope_popular"]
    assert task["metrics"]["accuracy"] == 1.0 and task["num_failed"] == 0
    path, auth, body = FakeOpenAI.seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "tiny" and body["max_tokens"] == 16 and body["temperature"] == 0.0
    assert results["run"]["backend"] == "openai" and results["run"]["api_model"] == "tiny"


def test_server_errors_are_counted_not_scored(server, world_dir, tmp_path):
    (run,) = prepare(resolve_tasks("pope_random"), world_dir, 3)
    FakeOpenAI.failures = {run.samples[1].prompt: 99}
    results = evaluate(
        f"openai:{server}",
        "pope_random",
        tmp_path,
        world_dir,
        limit=3,
        api_key="sk-test",
        retries=1,
        progress=False,
    )
    task = results["tasks"]["pope_random"]
    assert (task["num_scored"], task["num_failed"]) == (2, 1)
    assert "HTTP 500" in task["failed"][0]["error"]


def test_wrong_key_timeout_and_unreachable(server, world_dir):
    image = str(world_dir / "images" / "test_000000.png")
    (result,) = OpenAIBackend(server, api_key="wrong").generate([Request([image], "Q?", 4)])
    assert isinstance(result, RequestError) and "HTTP 401" in str(result)
    FakeOpenAI.delay_prompts = {"slow?"}
    (result,) = OpenAIBackend(server, api_key="sk-test", timeout=0.2).generate(
        [Request([image], "slow?", 4)]
    )
    assert isinstance(result, RequestError)
    (result,) = OpenAIBackend("http://127.0.0.1:9/v1", timeout=1).generate(
        [Request([image], "Q?", 4)]
    )
    assert isinstance(result, RequestError) and "unreachable" in str(result)


def test_backend_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="expected openai:http://host:port/v1"):
        make_backend("openai:localhost:8000")
    with pytest.raises(ConfigError, match="timeout must be positive"):
        make_backend("openai:http://127.0.0.1:1/v1", timeout=0)
    with pytest.raises(Exception, match="model directory .* not found"):
        make_backend(str(tmp_path / "nothing"))
