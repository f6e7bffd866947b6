"""From a validated chat-completion request to what the engine decodes.

Messages become ocelli's chat-template messages (image parts become `<image>`
placeholders through `normalize_messages`, the one conversion shared with the
library), images are fetched or decoded and preprocessed, the prompt is tokenized, and
every limit that needs the content (images per request, prompt tokens, max_tokens) is
checked here, so nothing over a limit reaches the engine. Text the client sends stays
text: control tokens typed in it are escaped (`as_text`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from ocelli.data.chat_template import normalize_messages
from ocelli.data.processing import OcelliProcessor
from ocelli.errors import OcelliError
from ocelli.serve.config import ServeConfig
from ocelli.serve.engine import Prompt
from ocelli.serve.errors import BadRequest, from_library_error
from ocelli.serve.fetch import ImageFetcher
from ocelli.serve.images import decode_data_url, open_image
from ocelli.serve.sampling import SamplingParams
from ocelli.serve.schema import ChatCompletionRequest

MAX_STOP_STRINGS = 4  # OpenAI's limit
WORD_JOINER = "\u2060"  # invisible, and no tokenizer's special token contains it


@dataclass
class PreparedRequest:
    prompt: Prompt
    params: list[SamplingParams]  # one per choice
    images: list[bytes] = field(default_factory=list)  # as sent, for the corrector
    messages: list[dict[str, str]] = field(default_factory=list)


class RequestPreparer:
    def __init__(
        self, processor: OcelliProcessor, config: ServeConfig, fetcher: ImageFetcher | None
    ) -> None:
        limits = [n for n in (config.max_prompt_tokens, processor.max_length) if n]
        self.max_prompt_tokens = min(limits) if limits else None
        # The length check is done here, with its own error code; the processor would
        # report an over-long prompt like any other prompt error.
        self.processor = copy.copy(processor)
        self.processor.max_length = None
        self.config = config
        self.fetcher = fetcher
        special = [
            t.content for t in processor.tokenizer.added_tokens_decoder.values() if t.special
        ]
        self.control_tokens = sorted((t for t in special if len(t) > 1), key=len, reverse=True)

    async def prepare(self, request: ChatCompletionRequest) -> PreparedRequest:
        params = self.sampling_params(request)
        messages, image_urls = self.messages(request)
        images = [await self.image_bytes(url, param) for url, param in image_urls]
        prompt = await run_in_threadpool(self.encode, messages, images, image_urls)
        return PreparedRequest(prompt, params, images, messages)

    def sampling_params(self, request: ChatCompletionRequest) -> list[SamplingParams]:
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(request, name):
                raise BadRequest(f"{name} is not supported; leave it at 0", name, "unsupported")
        if request.logprobs:
            raise BadRequest("logprobs are not supported", "logprobs", "unsupported")
        if request.n > self.config.max_n:
            raise BadRequest(f"n is {request.n}, over the limit of {self.config.max_n}", "n")
        stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
        if len(stop) > MAX_STOP_STRINGS:
            raise BadRequest(f"give at most {MAX_STOP_STRINGS} stop strings", "stop")
        max_tokens = request.max_completion_tokens or request.max_tokens
        if max_tokens is not None and max_tokens > self.config.max_tokens_limit:
            raise BadRequest(
                f"max_tokens is {max_tokens}, over this server's limit of "
                f"{self.config.max_tokens_limit}",
                "max_tokens",
            )
        return [
            SamplingParams(
                max_tokens=max_tokens or self.config.max_tokens_limit,
                temperature=request.temperature,
                top_p=request.top_p,
                # Choices of one seeded request differ from each other, reproducibly.
                seed=None if request.seed is None else request.seed + index,
                stop=stop,
                ignore_eos=request.ignore_eos,
            )
            for index in range(request.n)
        ]

    def messages(
        self, request: ChatCompletionRequest
    ) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
        """Template messages, and each image's URL with the JSON path that holds it."""
        raw: list[dict[str, Any]] = []
        image_urls: list[tuple[str, str]] = []
        for index, message in enumerate(request.messages):
            role = "system" if message.role == "developer" else message.role
            if isinstance(message.content, str):
                raw.append({"role": role, "content": self.as_text(message.content)})
                continue
            parts = []
            for part_index, part in enumerate(message.content):
                if part.type == "image_url":
                    param = f"messages.{index}.content.{part_index}.image_url.url"
                    image_urls.append((part.image_url.url, param))
                    parts.append(part.model_dump())
                else:
                    parts.append({"type": "text", "text": self.as_text(part.text)})
            raw.append({"role": role, "content": parts})
        if len(image_urls) > self.config.max_images_per_request:
            raise BadRequest(
                f"the request has {len(image_urls)} images, over the limit of "
                f"{self.config.max_images_per_request}; send fewer",
                "messages",
                "too_many_images",
            )
        try:
            return normalize_messages(raw), image_urls
        except OcelliError as exc:
            raise from_library_error(exc) from None

    def as_text(self, text: str) -> str:
        """`text` with the tokenizer's control tokens (`<|im_start|>`, `<|im_end|>`,
        `<image>`, ...) broken by a word joiner after their first character, so they are
        tokenized as the ordinary characters they look like. What a client sends is text,
        as in OpenAI's API: typing `<|im_end|>` must not end a turn, nor `<image>` claim
        an image; only image parts place images, only the template writes turns."""
        for token in self.control_tokens:
            if token in text:
                text = text.replace(token, token[0] + WORD_JOINER + token[1:])
        return text

    async def image_bytes(self, url: str, param: str) -> bytes:
        if url.startswith("data:"):
            return decode_data_url(url, self.config.max_image_bytes, param)
        if self.fetcher is None:
            raise BadRequest(
                "image URLs are disabled on this server; send the image inline as a "
                "data:image/png;base64,... URL",
                param,
                "image_urls_disabled",
            )
        return await self.fetcher.fetch(url, param)

    def encode(
        self,
        messages: list[dict[str, str]],
        images: list[bytes],
        image_urls: list[tuple[str, str]],
    ) -> Prompt:
        """Decode and preprocess the images, tokenize the prompt, check its length."""
        pictures = [
            open_image(data, self.config.max_image_pixels, param)
            for data, (_, param) in zip(images, image_urls, strict=True)
        ]
        try:
            input_ids = self.processor.encode_prompt(messages, len(pictures))["input_ids"]
            pixel_values = self.processor.image_processor(pictures) if pictures else None
        except OcelliError as exc:
            raise from_library_error(exc) from None
        if self.max_prompt_tokens is not None and len(input_ids) > self.max_prompt_tokens:
            raise BadRequest(
                f"the prompt is {len(input_ids)} tokens, over the limit of "
                f"{self.max_prompt_tokens}; shorten it or send fewer images",
                "messages",
                "context_length_exceeded",
            )
        return Prompt(input_ids, pixel_values)
