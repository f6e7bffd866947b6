"""ocelli's extensions to a chat-completions request, `"ocelli": {...}` in the body
(OpenAI clients: `extra_body={"ocelli": {...}}`):

  "vcd": {"alpha": 1.0, "beta": 0.1, "noise_step": 500}   visual contrastive decoding
  "correct": true                                          the Woodpecker-style corrector

The batching engine decodes one row per sequence, while VCD needs a second, noised-image
row in step with each; so VCD requests take the library's pipeline path instead
(`OcelliPipeline.respond(..., vcd=VCDConfig(...))` on the served weights), one request
at a time beside the engine's batch. Their answers come back through ordinary finished
handles, so whole and streamed responses are built as for any request (a streamed VCD
answer arrives in one piece). The corrector needs the whole answer and runs after
decoding (ocelli.align.corrector); its verification questions use the same pipeline.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from starlette.concurrency import run_in_threadpool

from ocelli.data.chat_template import IMAGE_TOKEN
from ocelli.serve.engine import Completion, Engine, Handle
from ocelli.serve.errors import BadRequest
from ocelli.serve.images import open_image
from ocelli.serve.prepare import PreparedRequest
from ocelli.serve.sampling import SamplingParams
from ocelli.serve.schema import ChatCompletion, ChatCompletionRequest, VCDOptions


class PipelinePath:
    """The served model outside the engine: VCD decoding and the corrector's questions."""

    def __init__(self, engine: Engine, max_image_pixels: int | None) -> None:
        from ocelli.generate.pipeline import OcelliPipeline

        self.pipeline = OcelliPipeline(engine.model, engine.processor)
        self.max_image_pixels = max_image_pixels
        self._lock = threading.Lock()  # one pipeline call at a time
        self._corrector: Any = None

    def vcd_text(
        self, prepared: PreparedRequest, params: SamplingParams, options: VCDOptions
    ) -> Completion:
        from ocelli.generate import VCDConfig

        pictures = [open_image(data, self.max_image_pixels, "messages") for data in prepared.images]
        config = VCDConfig(alpha=options.alpha, beta=options.beta, noise_step=options.noise_step)
        with self._lock:
            text = self.pipeline.respond(
                prepared.messages,
                pictures,
                max_new_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=params.seed,
                vcd=config,
            )
        num_tokens = len(self.pipeline.processor.tokenizer.encode(text, add_special_tokens=False))
        reason = "length" if num_tokens >= params.max_tokens else "stop"
        for stop in params.stop:
            if stop in text:
                text, reason = text[: text.index(stop)], "stop"
        return Completion(text, reason, len(prepared.prompt.input_ids), num_tokens)

    def corrections(self, prepared: PreparedRequest, answers: list[str]) -> list[dict[str, Any]]:
        from ocelli.align.corrector import Correction, Corrector

        question = _last_user_text(prepared.messages)
        if not prepared.images:
            reason = "cannot verify: the request has no image"
            return [Correction(a, a, False, reason).to_dict() for a in answers]
        with self._lock:
            if self._corrector is None:
                self._corrector = Corrector(self.pipeline)
            return [
                self._corrector.correct(prepared.images[-1], answer, question).to_dict()
                for answer in answers
            ]


def check_options(body: ChatCompletionRequest) -> None:
    options = body.ocelli
    if options is not None and options.correct and body.stream:
        raise BadRequest(
            "ocelli.correct rewrites the whole answer, so it cannot stream; send stream=false",
            "ocelli.correct",
            "unsupported",
        )


async def vcd_handles(
    path: PipelinePath, prepared: PreparedRequest, options: VCDOptions
) -> list[Handle]:
    if not prepared.images:
        raise BadRequest(
            "VCD contrasts the image with a noised copy; send at least one image",
            "ocelli.vcd",
            "vcd_needs_image",
        )
    handles = []
    for params in prepared.params:
        completion = await run_in_threadpool(path.vcd_text, prepared, params, options)
        handle = Handle(asyncio.get_running_loop())
        if completion.text:
            handle._send("delta", completion.text)
        handle._send("done", completion)
        handles.append(handle)
    return handles


async def correct_response(
    path: PipelinePath, prepared: PreparedRequest, response: ChatCompletion
) -> ChatCompletion:
    answers = [choice.message.content for choice in response.choices]
    reports = await run_in_threadpool(path.corrections, prepared, answers)
    for choice, report in zip(response.choices, reports, strict=True):
        choice.message.content = report["text"]
        choice.ocelli_correction = report
    return response


def _last_user_text(messages: list[dict[str, str]]) -> str | None:
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1].replace(IMAGE_TOKEN, "").strip() if users else None
