"""Serving under load and across a client's or the server's exit: throughput with
concurrent clients against the same requests one at a time, a client that disconnects
mid-stream frees its slot, and SIGTERM drains in-flight requests before exiting."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import openai
import pytest

from .conftest import API_KEY, MODEL, start_server, wait_until

QUESTIONS = [f"Question {i}: what is left of the {c} cube?" for i, c in enumerate("abcdefgh")]
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=120)


def _ask(client: openai.OpenAI, question: str, max_tokens: int):
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0,
        extra_body={"ignore_eos": True},
    )


@pytest.mark.slow
def test_eight_concurrent_clients_beat_one_at_a_time(pipeline, one_thread, record_property):
    max_tokens = 32
    with start_server(pipeline, max_batch_size=8) as live:
        clients = [_client(live.url) for _ in QUESTIONS]
        _ask(clients[0], "warm up", 4)
        start = time.perf_counter()
        sequential = [_ask(clients[0], q, max_tokens) for q in QUESTIONS]
        sequential_s = time.perf_counter() - start
        start = time.perf_counter()
        with ThreadPoolExecutor(len(QUESTIONS)) as pool:
            concurrent = list(pool.map(_ask, clients, QUESTIONS, [max_tokens] * len(QUESTIONS)))
        concurrent_s = time.perf_counter() - start
    tokens = sum(r.usage.completion_tokens for r in sequential)
    assert tokens == sum(r.usage.completion_tokens for r in concurrent) == 8 * max_tokens
    ratio = (tokens / concurrent_s) / (tokens / sequential_s)
    record_property("throughput_ratio_8_clients", round(ratio, 2))
    print(
        f"\n8 clients: {tokens / concurrent_s:.0f} tok/s; one at a time: "
        f"{tokens / sequential_s:.0f} tok/s; ratio {ratio:.2f}"
    )
    assert ratio > 1.5, f"batching gave only {ratio:.2f}x the sequential throughput"
    # Batched greedy answers are the answers each request gets alone.
    answers = [r.choices[0].message.content for r in concurrent]
    assert answers == [r.choices[0].message.content for r in sequential]


def test_a_client_that_disconnects_mid_stream_frees_its_slot(pipeline, one_thread):
    with start_server(pipeline, max_tokens_limit=1900) as live:
        engine = live.state.engine
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Talk for a long time."}],
            "max_tokens": 1900,
            "stream": True,
            "ignore_eos": True,
        }
        url = f"{live.url}/v1/chat/completions"
        with httpx2.stream("POST", url, json=body, headers=HEADERS, timeout=60) as response:
            for index, _ in enumerate(response.iter_lines()):
                if index >= 6:
                    break
        assert wait_until(lambda: engine.num_running == 0, timeout=10)
        generated = engine.generated_tokens_total
        assert generated < 1900, "the engine stopped long before max_tokens"
        assert live.state.active == 0  # the request's concurrency slot is back
        reply = _ask(_client(live.url), "still there?", 3)
        assert reply.usage.completion_tokens == 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_then_exits(model_dir, tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "ocelli.cli", "serve", "--model", str(model_dir)]
    command += ["--port", str(port), "--threads", "1", "--max-tokens-limit", "400"]
    env = {**os.environ, "OCELLI_API_KEY": API_KEY}
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        assert wait_until(lambda: _healthy(url), timeout=60), (tmp_path / "server.log").read_text()
        body = {
            "model": "default",
            "messages": [{"role": "user", "content": "Keep talking."}],
            "max_tokens": 400,
            "stream": True,
            "ignore_eos": True,
        }
        events = []
        with httpx2.stream(
            "POST", f"{url}/v1/chat/completions", json=body, headers=HEADERS, timeout=60
        ) as response:
            lines = response.iter_lines()
            events.append(next(lines))
            process.send_signal(signal.SIGTERM)
            events += [line for line in lines if line]
        assert events[-1] == "data: [DONE]"
        assert '"finish_reason":"length"' in events[-2]
        assert process.wait(timeout=30) == 0
        with pytest.raises(httpx2.ConnectError):
            httpx2.get(f"{url}/health")
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert "Shutting down" in (tmp_path / "server.log").read_text()


def _healthy(url: str) -> bool:
    try:
        return httpx2.get(f"{url}/health", timeout=1).status_code == 200
    except httpx2.HTTPError:
        return False
