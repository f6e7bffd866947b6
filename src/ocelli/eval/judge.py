"""An LLM judge for open-ended answers, through any OpenAI-compatible server.

A task whose metric is `judge` (a task file with `answer: judge`) has its generated
answers rated by a second model: the judge gets the question, the reference answer and
the model's answer in a prompt template, and must end its reply with `Rating: [[N]]`,
N an integer from 0 to 10. A sample's score is N / 10.

What can go wrong is kept apart from what was judged wrong:
- a failed request (server error, timeout, unreachable) is retried, then counted as
  `judge_failed` and retried again when the run is resumed;
- a reply without exactly one rating in that format (or several that disagree, or one
  out of range) is counted as `unparseable`, its text kept in the samples file;
neither is scored, so neither lowers the judge score.

The template, the judge's URL, model name, temperature, token limit, timeout, retries
and the name of the environment variable holding its API key (never the key) are
recorded in results.json.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ocelli.errors import ConfigError
from ocelli.eval.backends import OPENAI_PREFIX, chat_completion

MAX_RATING = 10
VERDICT_FORMAT = "Rating: [[N]], N an integer from 0 to 10"
TEMPLATE_FIELDS = ("question", "reference", "answer")

DEFAULT_TEMPLATE = """You are grading an answer to a question about an image. You do not see the image: compare the answer with the reference answer, which is correct.

Question: {question}
Reference answer: {reference}
Answer to grade: {answer}

Rate the answer from 0 (wrong, or unrelated to the question) to 10 (says what the reference says; wording may differ). Give one short sentence of reasoning, then the rating on its own last line, exactly in this format:
Rating: [[N]]"""

_RATING = re.compile(r"\[\[\s*([0-9]+(?:\.[0-9]+)?)\s*\]\]")


def parse_rating(text: str) -> int | None:
    """The rating in `text`, or None if it holds none, several different ones, or one
    that is not an integer from 0 to 10."""
    found = {match.group(1) for match in _RATING.finditer(text or "")}
    if len(found) != 1:
        return None
    value = float(found.pop())
    if not value.is_integer() or not 0 <= value <= MAX_RATING:
        return None
    return int(value)


def check_template(template: str, where: str) -> str:
    """`template` if it is a string using {question}, {reference} and {answer} only."""
    if not isinstance(template, str):
        raise ConfigError(f"{where}: the judge prompt must be a string")
    try:
        template.format(**dict.fromkeys(TEMPLATE_FIELDS, ""))
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{where}: the judge prompt may only use the fields {{question}}, {{reference}} "
            f"and {{answer}} (double other braces: {{{{ }}}}); {type(exc).__name__}: {exc}"
        ) from None
    missing = [name for name in TEMPLATE_FIELDS if "{" + name + "}" not in template]
    if missing:
        raise ConfigError(f"{where}: the judge prompt lacks {', '.join(missing)}")
    return template


@dataclass
class Verdict:
    status: str  # "ok", "unparseable" or "failed"
    rating: int | None
    reply: str | None
    error: str | None
    attempts: int

    def to_record(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "rating": self.rating,
            "reply": self.reply,
            "error": self.error,
            "attempts": self.attempts,
        }


class Judge:
    """A judge model behind an OpenAI-compatible endpoint (`openai:http://host:port/v1`)."""

    def __init__(
        self,
        endpoint: str,
        model: str = "default",
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 60.0,
        retries: int = 2,
        max_tokens: int = 256,
        workers: int = 8,
    ) -> None:
        if not endpoint.startswith(OPENAI_PREFIX + "http://") and not endpoint.startswith(
            OPENAI_PREFIX + "https://"
        ):
            raise ConfigError(f"--judge {endpoint}: expected {OPENAI_PREFIX}http://host:port/v1")
        if timeout <= 0:
            raise ConfigError(f"the judge's timeout must be positive, got {timeout}")
        if retries < 0:
            raise ConfigError(f"the judge's retries must be 0 or more, got {retries}")
        self.base_url = endpoint[len(OPENAI_PREFIX) :].rstrip("/")
        self.model, self.timeout, self.retries = model, timeout, retries
        self.max_tokens, self.workers = max_tokens, max(1, workers)
        self.api_key_env = api_key_env
        self.api_key = os.environ.get(api_key_env) if api_key_env else None

    def describe(self) -> dict[str, Any]:
        """What results.json records about the judge (the key's variable, not the key)."""
        return {
            "endpoint": f"{OPENAI_PREFIX}{self.base_url}",
            "model": self.model,
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
            "timeout_s": self.timeout,
            "retries": self.retries,
            "api_key_env": self.api_key_env,
            "api_key_set": bool(self.api_key),
            "verdict_format": VERDICT_FORMAT,
            "score": "rating / 10",
        }

    def judge(self, prompts: list[str]) -> list[Verdict]:
        """One verdict per filled-in judge prompt, asked concurrently."""
        with ThreadPoolExecutor(max_workers=min(self.workers, max(1, len(prompts)))) as pool:
            return list(pool.map(self._one, prompts))

    def _one(self, prompt: str) -> Verdict:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
        }
        error = None
        for attempt in range(1, self.retries + 2):
            reply = chat_completion(self.base_url, body, self.api_key, self.timeout)
            if isinstance(reply, Exception):
                error = str(reply)
                continue
            rating = parse_rating(reply)
            if rating is None:
                return Verdict("unparseable", None, reply, f"no {VERDICT_FORMAT}", attempt)
            return Verdict("ok", rating, reply, None, attempt)
        return Verdict("failed", None, None, error, self.retries + 1)


def judge_prompt(template: str, question: str, reference: Any, answer: str) -> str:
    return template.format(question=question, reference=str(reference), answer=answer)
