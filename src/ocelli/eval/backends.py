"""Where answers come from: a local model directory, or any OpenAI-compatible server.

A backend answers a batch of requests and reports a failure per request (an exception in
its place) instead of failing the batch, so the runner can retry just those and count
what still fails, never scoring it as a wrong answer.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import mimetypes
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocelli.errors import CheckpointError, ConfigError, OcelliError
from ocelli.eval import shared_prefix

OPENAI_PREFIX = "openai:"


@dataclass
class Request:
    images: list[str]
    prompt: str
    max_new_tokens: int
    candidates: list[str] | None = None  # log-likelihood ranking: the answers to score


# A ranked request: the likeliest candidate and every candidate's summed log-probability.
Ranking = tuple[str, list[float]]


class RequestError(OcelliError, RuntimeError):
    """One request failed (server error, timeout, unreadable image); retried, then counted."""


class LocalBackend:
    """A model directory loaded with ocelli.generate.load; greedy decoding, and
    log-likelihood ranking of candidate answers. A batch's distinct images are read once
    and its questions continue from their cached keys and values (ocelli.eval.shared_prefix);
    a model whose connector acts inside the language model goes through the pipeline's
    own batched generation and scoring."""

    supports_loglik = True

    def __init__(self, model_dir: str | Path, device: str = "cpu") -> None:
        from ocelli.generate.pipeline import load, model_directory

        self.model_dir = model_directory(model_dir)  # a step directory's model/
        self.pipeline = load(self.model_dir, device=device)

    @classmethod
    def from_pipeline(
        cls,
        pipeline: Any,
        model_dir: str | Path,
    ) -> LocalBackend:
        """A backend on an already loaded pipeline (of the model saved in `model_dir`)."""
        backend = cls.__new__(cls)
        backend.model_dir, backend.pipeline = Path(model_dir), pipeline
        return backend

    def identity(self) -> dict[str, Any]:
        return {
            "model": str(self.model_dir),
            "backend": "local",
            "model_config_hash": _sha256_files([self.model_dir / "config.json"]),
            "weights_hash": _sha256_files(sorted(self.model_dir.glob("*.safetensors"))),
        }

    def generation_settings(self) -> dict[str, Any]:
        if shared_prefix.supports(self.pipeline):  # rows: pad | image prefix | pad | question
            return {"do_sample": False, "num_beams": 1, "decoding": "greedy", "shared_prefix": True}
        return {"do_sample": False, "num_beams": 1, "decoding": "greedy", "padding_side": "left"}

    def generate(self, requests: list[Request]) -> list[str | Exception]:
        """One batch per distinct max_new_tokens; a failing batch is retried one request
        at a time so a single bad image fails only its own request."""
        return _batch_or_each(self._batch, requests)

    def rank(self, requests: list[Request]) -> list[Ranking | Exception]:
        """The likeliest of each request's candidates (the first one on a tie)."""
        return _batch_or_each(self._rank, requests)

    def _rank(self, requests: list[Request]) -> list[Ranking]:
        images = [r.images for r in requests]
        prompts = [r.prompt for r in requests]
        candidates = [r.candidates or [] for r in requests]
        scores = None
        if shared_prefix.supports(self.pipeline):
            with contextlib.suppress(shared_prefix.Unshareable):
                scores = shared_prefix.score_candidates(self.pipeline, images, prompts, candidates)
        if scores is None:
            scores = self.pipeline.score_batch(
                images, prompts, candidates, batch_size=len(requests)
            )
        return [
            (request.candidates[values.index(max(values))], values)
            for request, values in zip(requests, scores, strict=True)
        ]

    def _batch(self, requests: list[Request]) -> list[str]:
        tokens = {r.max_new_tokens for r in requests}
        if len(tokens) > 1:
            raise ConfigError("one batch must share max_new_tokens")  # the runner never mixes
        images, prompts = [r.images for r in requests], [r.prompt for r in requests]
        if shared_prefix.supports(self.pipeline):
            return shared_prefix.generate_greedy(self.pipeline, images, prompts, tokens.pop())
        return self.pipeline.chat_batch(
            images, prompts, max_new_tokens=tokens.pop(), do_sample=False
        )


class OpenAIBackend:
    """POSTs /chat/completions to an OpenAI-compatible server (ocelli serve, vLLM, ...),
    images inline as base64 data URLs, the batch's requests concurrently. Chat
    completions give no log-probabilities of a given answer: no log-likelihood ranking."""

    supports_loglik = False

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        api_key: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"--model {OPENAI_PREFIX}{base_url}: expected {OPENAI_PREFIX}http://host:port/v1"
            )
        if timeout <= 0:
            raise ConfigError(f"the request timeout must be positive, got {timeout}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    def identity(self) -> dict[str, Any]:
        # A server's weights cannot be hashed from here: the URL and model name identify it.
        key = f"{self.base_url}|{self.model}"
        return {
            "model": f"{OPENAI_PREFIX}{self.base_url}",
            "backend": "openai",
            "api_model": self.model,
            "model_config_hash": hashlib.sha256(key.encode()).hexdigest(),
            "weights_hash": None,
        }

    def generation_settings(self) -> dict[str, Any]:
        return {"temperature": 0.0, "decoding": "greedy (server side)", "timeout_s": self.timeout}

    def generate(self, requests: list[Request]) -> list[str | Exception]:
        with ThreadPoolExecutor(max_workers=max(1, len(requests))) as pool:
            return list(pool.map(self._one, requests))

    def _one(self, request: Request) -> str | Exception:
        try:
            content = [_image_part(path) for path in request.images]
        except OSError as exc:
            return RequestError(f"could not read image: {exc}")
        content.append({"type": "text", "text": request.prompt})
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": request.max_new_tokens,
            "temperature": 0.0,
        }
        return chat_completion(self.base_url, body, self.api_key, self.timeout)


def chat_completion(
    base_url: str, body: dict[str, Any], api_key: str | None, timeout: float
) -> str | RequestError:
    """POST `body` to {base_url}/chat/completions: the reply's text, or the failure."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    http = urllib.request.Request(
        f"{base_url}/chat/completions", json.dumps(body).encode(), headers, method="POST"
    )
    try:
        with urllib.request.urlopen(http, timeout=timeout) as response:
            reply = json.loads(response.read().decode("utf-8"))
        return str(reply["choices"][0]["message"]["content"] or "")
    except urllib.error.HTTPError as exc:
        return RequestError(f"HTTP {exc.code} from {base_url}: {exc.read()[:200]!r}")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return RequestError(f"{base_url} unreachable: {getattr(exc, 'reason', exc)}")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return RequestError(f"malformed reply from {base_url}: {exc!r}")


def _batch_or_each(run: Any, requests: list[Request]) -> list[Any]:
    """`run` on the whole batch; if it fails, on each request alone, so one bad request
    (an unreadable image) fails only itself."""
    try:
        return list(run(requests))
    except OcelliError:
        results: list[Any] = []
        for request in requests:
            try:
                results += run([request])
            except OcelliError as exc:
                results.append(RequestError(str(exc)))
        return results


def _image_part(path: str) -> dict[str, Any]:
    data = Path(path).read_bytes()
    mime = mimetypes.guess_type(path)[0] or "image/png"
    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url}}


def _sha256_files(paths: list[Path]) -> str | None:
    if not paths or not all(p.is_file() for p in paths):
        return None
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def make_backend(
    model: str, api_model: str = "default", api_key: str | None = None, timeout: float = 60.0
) -> LocalBackend | OpenAIBackend:
    """`model` is a model directory or openai:http://host:port/v1."""
    if model.startswith(OPENAI_PREFIX):
        return OpenAIBackend(model[len(OPENAI_PREFIX) :], api_model, api_key, timeout)
    if not Path(model).is_dir():
        raise CheckpointError(
            f"model directory {model} not found; pass a trained model directory or {OPENAI_PREFIX}URL"
        )
    return LocalBackend(model)
