"""Serving under load: `ocelli serve` in a subprocess on 127.0.0.1, driven by the `openai`
client (or bare httpx) at several concurrencies, then a memory soak.

Every request is streamed, carries one world image as a data URL and a world question,
and asks for exactly `max_tokens` tokens (`ignore_eos`, vLLM's extension), so every level
does the same work per request. A level sends `requests_per_level` requests from
`concurrency` client threads; `rounds` rounds run every level, in alternating order, and a
level's throughput is all its requests' tokens over all its rounds' time, compared with
concurrency 1 measured in the same run. Latency is request to last chunk, time to first token request to the first
content chunk. The soak then sends `soak_requests` more while the server's RSS is sampled;
with `--soak-seconds N` it instead keeps `soak_concurrency` clients busy for N seconds and
records, every `soak_window_s`, the server's RSS, the window's latency p50 / p99 and its
tokens/s: memory is stable when the last third of the windows' RSS is within 5% (and
10 MiB) of the first third's.

The client shares the machine with the server, so its CPU per token is taken from the
server's at high concurrency. `--set client=httpx` reads the same requests' server-sent
events with bare httpx (one `json.loads` per chunk) instead of the `openai` package; every
level of a run uses the same client, and the results say which.

    python benchmarks/serve_load.py --model runs/quickstart/instruct/final
    python benchmarks/serve_load.py --model DIR --soak-seconds 180
    python benchmarks/serve_load.py --tiny --no-docs        # a tiny random model
    python benchmarks/serve_load.py --model DIR --set client=httpx
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as common
import numpy as np

from ocelli.errors import ConfigError

NAME = "serve_load"
MIB = 1024 * 1024
STARTUP_TIMEOUT_S = 120
CLIENTS = ("openai", "httpx")


@dataclass
class ServeLoadConfig:
    model_dir: str = ""  # --model
    tiny: bool = False  # --tiny: a tiny random model instead of model_dir
    concurrencies: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    requests_per_level: int = 64  # per level and round, at least min_waves x concurrency
    # A level's requests start together and drain together; with several waves per client
    # the batch runs full most of the time, as under steady traffic.
    min_waves: int = 4
    rounds: int = 2  # each round runs every level once, alternating the order
    max_tokens: int = 32
    warmup_requests: int = 4
    max_batch_size: int = 16  # the server's --max-batch-size
    admission_wait_steps: int = 4  # the server's --admission-wait-steps
    num_images: int = 16  # distinct world scenes the requests cycle through
    soak_requests: int = 300  # the soak's length when soak_seconds is 0
    soak_concurrency: int = 16
    soak_seconds: float = 0.0  # --soak-seconds: a timed soak instead of soak_requests
    soak_window_s: float = 10.0  # a timed soak's sampling period
    rss_interval_s: float = 0.25
    seed: int = 0
    stream: bool = True  # false: one JSON response per request (no per-token chunks)
    client: str = "openai"  # or "httpx": bare httpx, less client CPU per token (CLIENTS)

    def __post_init__(self) -> None:
        if not self.concurrencies or min(self.concurrencies) < 1 or self.max_tokens < 1:
            raise ConfigError(
                "concurrencies must be >= 1 and max_tokens >= 1; got "
                f"{self.concurrencies} and {self.max_tokens}"
            )
        if min(self.rounds, self.requests_per_level, self.min_waves) < 1:
            raise ConfigError(
                "rounds, requests_per_level and min_waves must be >= 1; got "
                f"{self.rounds}, {self.requests_per_level} and {self.min_waves}"
            )
        if self.soak_seconds < 0 or self.soak_window_s <= 0:
            raise ConfigError(
                "soak_seconds must be >= 0 and soak_window_s > 0; got "
                f"{self.soak_seconds} and {self.soak_window_s}"
            )
        if 1 not in self.concurrencies:
            raise ConfigError("concurrencies must include 1, the baseline of every ratio")
        if self.client not in CLIENTS:
            raise ConfigError(
                f"client must be one of {', '.join(CLIENTS)}; got {self.client!r} "
                "(e.g. --set client=httpx)"
            )


# -- the requests ----------------------------------------------------------------------


def world_requests(config: ServeLoadConfig) -> list[tuple[str, str]]:
    """(image data URL, question) pairs from quickstart-world scenes."""
    from ocelli.world import QUICKSTART_WORLD, generate_scene, questions_for_scene, render_scene

    rng = np.random.default_rng(config.seed)
    pairs = []
    for index in range(config.num_images):
        scene = generate_scene(rng, QUICKSTART_WORLD, scene_id=f"load{index}")
        buffer = io.BytesIO()
        render_scene(scene).save(buffer, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        question = questions_for_scene(scene, QUICKSTART_WORLD, seed=index, langs=["en"])[0]
        pairs.append((url, question["question"]))
    return pairs


Outcome = dict[str, Any]
Asker = Callable[[tuple[str, str]], Outcome]  # one request -> its outcome


def request_body(request: tuple[str, str], max_tokens: int, stream: bool) -> dict[str, Any]:
    """The chat-completion request for one (image data URL, question) pair."""
    url, question = request
    body: dict[str, Any] = {
        "model": "default",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": question},
                ],
            }
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
        "ignore_eos": True,  # vLLM's extension: exactly max_tokens tokens
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def ask(client: Any, request: tuple[str, str], max_tokens: int, stream: bool = True) -> Outcome:
    """One request through the `openai` client: latency, time to first token (streamed
    only), output tokens or the error."""
    body = request_body(request, max_tokens, stream)
    extra_body = {"ignore_eos": body.pop("ignore_eos")}
    began = time.perf_counter()
    first_token_s = None
    tokens = 0
    try:
        response = client.chat.completions.create(**body, extra_body=extra_body)
        if not stream:
            tokens = response.usage.completion_tokens
        for chunk in response if stream else ():
            if first_token_s is None and chunk.choices and chunk.choices[0].delta.content:
                first_token_s = time.perf_counter() - began
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
    except Exception as exc:  # a load test counts failures instead of stopping at one
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"latency_s": time.perf_counter() - began, "ttft_s": first_token_s, "tokens": tokens}


def ask_httpx(
    client: Any, request: tuple[str, str], max_tokens: int, stream: bool = True
) -> Outcome:
    """`ask` with a bare `httpx.Client`: the server-sent events are read line by line."""
    body = request_body(request, max_tokens, stream)
    began = time.perf_counter()
    first_token_s = None
    tokens = 0
    try:
        if not stream:
            response = client.post("/chat/completions", json=body)
            response.raise_for_status()
            tokens = response.json()["usage"]["completion_tokens"]
        else:
            with client.stream("POST", "/chat/completions", json=body) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[len("data: ") :])
                    if "error" in chunk:
                        raise RuntimeError(chunk["error"].get("message"))
                    choices = chunk["choices"]
                    if first_token_s is None and choices and choices[0]["delta"].get("content"):
                        first_token_s = time.perf_counter() - began
                    if chunk.get("usage"):
                        tokens = chunk["usage"]["completion_tokens"]
    except Exception as exc:  # a load test counts failures instead of stopping at one
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"latency_s": time.perf_counter() - began, "ttft_s": first_token_s, "tokens": tokens}


def make_asker(url: str, config: ServeLoadConfig) -> Asker:
    """`config.client` sending to the server at `url`, pooling enough connections for the
    highest concurrency."""
    import httpx

    most = max(max(config.concurrencies), config.soak_concurrency)
    limits = httpx.Limits(max_connections=most, max_keepalive_connections=most)
    if config.client == "httpx":
        client = httpx.Client(base_url=f"{url}/v1", timeout=600, limits=limits)
        return lambda request: ask_httpx(client, request, config.max_tokens, config.stream)
    import openai

    client = openai.OpenAI(
        base_url=f"{url}/v1",
        api_key="unused",
        max_retries=0,
        timeout=600,
        http_client=openai.DefaultHttpxClient(limits=limits),
    )
    return lambda request: ask(client, request, config.max_tokens, config.stream)


def send(
    asker: Asker, requests: list[tuple[str, str]], count: int, concurrency: int
) -> tuple[list[Outcome], float]:
    """`count` requests from `concurrency` threads: (outcomes, wall seconds)."""
    chosen = [requests[i % len(requests)] for i in range(count)]
    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(asker, chosen))
    return outcomes, time.perf_counter() - began


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarise(outcomes: list[dict[str, Any]], wall_s: float, concurrency: int) -> dict[str, Any]:
    done = [o for o in outcomes if "error" not in o]
    errors = [o["error"] for o in outcomes if "error" in o]
    latencies = [o["latency_s"] for o in done]
    first_tokens = [o["ttft_s"] for o in done if o["ttft_s"] is not None]
    tokens = sum(o["tokens"] for o in done)
    return {
        "concurrency": concurrency,
        "requests": len(outcomes),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "wall_s": wall_s,
        "requests_per_s": len(done) / wall_s,
        "output_tokens": tokens,
        "output_tokens_per_s": tokens / wall_s,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "ttft_p50_s": percentile(first_tokens, 50),
        "ttft_p99_s": percentile(first_tokens, 99),
    }


# -- the server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(
    model_dir: Path, config: ServeLoadConfig, threads: int, log_path: Path
) -> Iterator[tuple[str, int]]:
    """`ocelli serve` on 127.0.0.1 and a free port, without keys: (base URL, pid)."""
    import httpx

    port = free_port()
    most = max(max(config.concurrencies), config.soak_concurrency)
    command = [sys.executable, "-m", "ocelli.cli", "serve", "--model", str(model_dir)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--threads", str(threads), "--no-ui"]
    command += ["--max-batch-size", str(config.max_batch_size)]
    command += ["--admission-wait-steps", str(config.admission_wait_steps)]
    command += ["--max-concurrent-requests", str(most), "--max-concurrent-per-key", str(most)]
    command += ["--max-tokens-limit", str(config.max_tokens)]
    env = {key: value for key, value in os.environ.items() if key != "OCELLI_API_KEY"}
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ocelli serve did not start:\n{log_path.read_text()}")
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            yield url, process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


class RssSampler:
    """Samples a process's resident memory every `interval_s` in a thread."""

    def __init__(self, pid: int, interval_s: float) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.samples_mib: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.samples_mib.append(self.process.memory_info().rss / MIB)
            self.stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop.set()
        self.thread.join()
        self.samples_mib.append(self.process.memory_info().rss / MIB)


def soak_for(
    asker: Asker, requests: list, config: ServeLoadConfig, sampler: RssSampler
) -> tuple[list[dict[str, Any]], float, list[dict[str, Any]]]:
    """`soak_concurrency` clients sending back to back for `soak_seconds`: (outcomes, wall
    seconds, one record per `soak_window_s` window: RSS, requests, tokens/s, latencies)."""
    began = time.perf_counter()
    deadline = began + config.soak_seconds
    finished: list[tuple[float, dict[str, Any]]] = []  # (end time, outcome)
    lock = threading.Lock()

    def client_loop(index: int) -> None:
        sent = index
        while time.perf_counter() < deadline:
            outcome = asker(requests[sent % len(requests)])
            with lock:
                finished.append((time.perf_counter(), outcome))
            sent += config.soak_concurrency

    windows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(config.soak_concurrency) as pool:
        futures = [pool.submit(client_loop, i) for i in range(config.soak_concurrency)]
        window_start = began
        while not all(future.done() for future in futures):
            time.sleep(min(0.2, config.soak_window_s))
            now = time.perf_counter()
            if now - window_start >= config.soak_window_s or all(f.done() for f in futures):
                with lock:
                    done = [o for end, o in finished if window_start <= end < now]
                window = summarise(done, now - window_start, config.soak_concurrency)
                window["elapsed_s"] = now - began
                window["rss_mib"] = sampler.process.memory_info().rss / MIB
                windows.append(window)
                window_start = now
        for future in futures:
            future.result()
    return [o for _, o in finished], time.perf_counter() - began, windows


def stability(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS and latency of the first third of the windows against the last third."""
    third = max(1, len(windows) // 3)
    first, last = windows[:third], windows[-third:]

    def middle(rows: list[dict[str, Any]], key: str) -> float | None:
        values = [row[key] for row in rows if row[key] is not None]
        return float(np.median(values)) if values else None

    rss_first, rss_last = middle(first, "rss_mib"), middle(last, "rss_mib")
    growth = (rss_last or 0.0) - (rss_first or 0.0)
    return {
        "windows": len(windows),
        "rss_first_third_mib": rss_first,
        "rss_last_third_mib": rss_last,
        "rss_growth_mib": growth,
        "memory_stable": bool(growth <= max(10.0, 0.05 * (rss_first or 0.0))),
        "latency_p50_first_third_s": middle(first, "latency_p50_s"),
        "latency_p50_last_third_s": middle(last, "latency_p50_s"),
        "latency_p99_first_third_s": middle(first, "latency_p99_s"),
        "latency_p99_last_third_s": middle(last, "latency_p99_s"),
    }


def memory_summary(samples_mib: list[float]) -> dict[str, Any]:
    """Start, peak and end RSS; it "grows" when the last quarter's median exceeds the
    first quarter's by more than 5% (and 10 MiB): a leak climbs, a warm allocator levels."""
    quarter = max(1, len(samples_mib) // 4)
    first, last = np.median(samples_mib[:quarter]), np.median(samples_mib[-quarter:])
    growth = float(last - first)
    return {
        "samples": len(samples_mib),
        "start_mib": samples_mib[0],
        "peak_mib": max(samples_mib),
        "end_mib": samples_mib[-1],
        "first_quarter_median_mib": float(first),
        "last_quarter_median_mib": float(last),
        "growth_mib": growth,
        "grows": bool(growth > max(10.0, 0.05 * float(first))),
    }


# -- the run ---------------------------------------------------------------------------


def build_tiny_model(directory: Path, requests: list[tuple[str, str]]) -> Path:
    """A tiny random model (CLIP-tiny, MLP, Llama-tiny) with a tokenizer trained on the
    benchmark's own questions: junk answers, real serving work."""
    texts = [question for _, question in requests] * 4
    return common.save_tiny_model(directory, texts, vocab_size=320)


def count_parameters(model_dir: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as weights:
            for name in weights.keys():
                total += int(np.prod(weights.get_slice(name).get_shape()))
    return total


def measure(url: str, pid: int, config: ServeLoadConfig, requests: list) -> dict[str, Any]:
    asker = make_asker(url, config)
    send(asker, requests, config.warmup_requests, 1)
    measured: dict[int, list[tuple[list[dict[str, Any]], float]]] = {
        concurrency: [] for concurrency in config.concurrencies
    }
    for index in range(config.rounds):
        # Alternate the order, so a trend in the shared machine's load favours no level.
        order = config.concurrencies if index % 2 == 0 else config.concurrencies[::-1]
        for concurrency in order:
            count = max(config.requests_per_level, config.min_waves * concurrency)
            measured[concurrency].append(send(asker, requests, count, concurrency))
    levels = []
    for concurrency, rounds in measured.items():
        outcomes = [outcome for round_outcomes, _ in rounds for outcome in round_outcomes]
        level = summarise(outcomes, sum(wall_s for _, wall_s in rounds), concurrency)
        level["round_tokens_per_s"] = [
            summarise(o, w, concurrency)["output_tokens_per_s"] for o, w in rounds
        ]
        levels.append(level)
    baseline = next(level for level in levels if level["concurrency"] == 1)
    for level in levels:
        level["throughput_ratio"] = level["output_tokens_per_s"] / baseline["output_tokens_per_s"]
    windows = None
    with RssSampler(pid, config.rss_interval_s) as sampler:
        if config.soak_seconds:
            outcomes, wall_s, windows = soak_for(asker, requests, config, sampler)
        else:
            outcomes, wall_s = send(asker, requests, config.soak_requests, config.soak_concurrency)
    soak = {**summarise(outcomes, wall_s, config.soak_concurrency)}
    soak["memory"] = memory_summary(sampler.samples_mib)
    if windows is not None:
        soak["windows"] = windows
        soak["stability"] = stability(windows)
    return {"levels": levels, "soak": soak}


def run(config: ServeLoadConfig, threads: int | None) -> dict[str, Any]:
    if not config.tiny and not config.model_dir:
        raise ConfigError("give a model directory with --model DIR, or --tiny")
    threads = threads or common.available_cores()
    load_before = common.load_average()
    requests = world_requests(config)
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        if config.tiny:
            model_dir = build_tiny_model(scratch_path / "tiny", requests)
        else:
            model_dir = Path(config.model_dir)
        num_parameters = count_parameters(model_dir)
        log_path = scratch_path / "server.log"
        with running_server(model_dir, config, threads, log_path) as (url, pid):
            results = measure(url, pid, config, requests)
    return {
        **results,
        "model": "tiny random" if config.tiny else str(config.model_dir),
        "num_parameters": num_parameters,
        "threads": threads,
        "cores": common.available_cores(),
        "load_average": load_before,
        "load_average_after": common.load_average(),
    }


def seconds_pair(first: float | None, second: float | None) -> str:
    """'0.12 / 0.34', or 'n/a' when not measured (a first token needs streaming)."""
    if first is None or second is None:
        return "n/a"
    return f"{first:.2f} / {second:.2f}"


def render(record: dict[str, Any]) -> str:
    results, config = record["results"], record["config"]
    rows = [
        [
            level["concurrency"],
            level["requests"],
            level["errors"],
            f"{level['requests_per_s']:.2f}",
            f"{level['output_tokens_per_s']:.0f}",
            f"**{level['throughput_ratio']:.2f}x**",
            " / ".join(f"{value:.0f}" for value in level["round_tokens_per_s"]),
            f"{level['latency_p50_s']:.2f} / {level['latency_p99_s']:.2f}",
            seconds_pair(level["ttft_p50_s"], level["ttft_p99_s"]),
        ]
        for level in results["levels"]
    ]
    table = common.markdown_table(
        [
            "concurrency",
            "requests",
            "errors",
            "requests/s",
            "output tokens/s",
            "vs concurrency 1",
            "tokens/s per round",
            "latency p50 / p99 (s)",
            "first token p50 / p99 (s)",
        ],
        rows,
    )
    soak = results["soak"]
    memory = soak["memory"]
    grows = "grows" if memory["grows"] else "does not grow"
    return "\n".join(
        [
            "### Serving under load",
            "",
            table,
            "",
            *render_timed_soak(soak),
            f"Memory soak: {soak['requests']} requests at concurrency {soak['concurrency']} "
            f"({soak['errors']} errors, {soak['output_tokens_per_s']:.0f} output tokens/s); "
            f"server RSS {memory['start_mib']:.0f} MiB at the start, {memory['peak_mib']:.0f} "
            f"MiB peak, {memory['end_mib']:.0f} MiB at the end ({memory['samples']} samples; "
            f"last-quarter median {memory['growth_mib']:+.1f} MiB against the first): it "
            f"{grows}.",
            "",
            f"*{common.caption(record)} Model: {results['model']} "
            f"({results['num_parameters'] / 1e6:.2f}M parameters); `ocelli serve` in a "
            f"subprocess on 127.0.0.1 with `--threads {results['threads']} --max-batch-size "
            f"{config['max_batch_size']} --admission-wait-steps "
            f"{config.get('admission_wait_steps', 0)}`, {client_words(config)} in threads "
            f"of the same {results['cores']}-core machine. Each request: one world image (PNG data URL) "
            f"and a world question, {'streamed' if config['stream'] else 'not streamed'}, "
            f"greedy, exactly {config['max_tokens']} output "
            f"tokens (`ignore_eos`); {config['rounds']} rounds, levels in alternating order, "
            f"each level max({config['requests_per_level']}, {config['min_waves']} x "
            "concurrency) requests a round; tokens/s over all rounds, ratios against "
            "concurrency 1 in the same run. 1-min load average after the run: "
            f"{results['load_average_after']}.*",
        ]
    )


def client_words(config: dict[str, Any]) -> str:
    """Which client the record's levels used (runs before the setting used `openai`)."""
    if config.get("client", "openai") == "httpx":
        return "a bare `httpx` client (SSE lines parsed with `json.loads`)"
    return "the `openai` client"


def render_timed_soak(soak: dict[str, Any]) -> list[str]:
    """The timed soak's windows as a table and its stability line; nothing without one."""
    if "windows" not in soak:
        return []
    rows = [
        [
            f"{window['elapsed_s']:.0f}",
            window["requests"],
            window["errors"],
            f"{window['output_tokens_per_s']:.0f}",
            _pair(window["latency_p50_s"], window["latency_p99_s"]),
            f"{window['rss_mib']:.0f}",
        ]
        for window in soak["windows"]
    ]
    header = ["soak time (s)", "requests", "errors", "output tokens/s", "latency p50 / p99 (s)"]
    table = common.markdown_table([*header, "server RSS (MiB)"], rows)
    stable = soak["stability"]
    verdict = "stable" if stable["memory_stable"] else "**growing**"
    return [
        f"Timed soak, {soak['wall_s']:.0f} s at concurrency {soak['concurrency']}, sampled "
        f"every {soak['wall_s'] / max(1, stable['windows']):.0f} s:",
        "",
        table,
        "",
        f"Memory {verdict}: server RSS median {stable['rss_first_third_mib']:.0f} MiB over the "
        f"first third of the windows, {stable['rss_last_third_mib']:.0f} MiB over the last "
        f"({stable['rss_growth_mib']:+.1f} MiB); latency p50 / p99 "
        f"{_pair(stable['latency_p50_first_third_s'], stable['latency_p99_first_third_s'])} s "
        "then "
        f"{_pair(stable['latency_p50_last_third_s'], stable['latency_p99_last_third_s'])} s.",
        "",
    ]


def _pair(first: float | None, second: float | None) -> str:
    return " / ".join("-" if v is None else f"{v:.2f}" for v in (first, second))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """`--model DIR`, `--soak-seconds N` and `--tiny` are shorthands for `--set
    model_dir=DIR`, `--set soak_seconds=N` and `--set tiny=true`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--tiny" in argv:
        argv.remove("--tiny")
        argv += ["--set", "tiny=true"]
    for flag, key in (("--model", "model_dir"), ("--soak-seconds", "soak_seconds")):
        if flag in argv:
            index = argv.index(flag)
            argv[index : index + 2] = ["--set", f"{key}={argv[index + 1]}"]
    return common.run_benchmark(NAME, ServeLoadConfig, __doc__.split("\n\n")[0], run, render, argv)


if __name__ == "__main__":
    main()
