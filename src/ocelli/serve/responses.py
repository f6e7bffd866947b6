"""Building chat-completion responses from engine handles: whole, or as server-sent
events (`data: {chunk}` lines, then `data: [DONE]`), as OpenAI's API sends them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from ocelli.serve.engine import Completion, Handle
from ocelli.serve.errors import ApiError
from ocelli.serve.schema import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    Usage,
)


@dataclass
class ResponseMeta:
    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


def usage(completions: Sequence[Completion]) -> Usage:
    # The prompt is prefilled once per choice but billed once, as OpenAI does.
    prompt = completions[0].prompt_tokens if completions else 0
    generated = sum(c.completion_tokens for c in completions)
    return Usage(prompt_tokens=prompt, completion_tokens=generated, total_tokens=prompt + generated)


def whole_response(meta: ResponseMeta, completions: Sequence[Completion]) -> ChatCompletion:
    choices = [
        Choice(
            index=index,
            message=AssistantMessage(content=completion.text),
            finish_reason=completion.finish_reason,
        )
        for index, completion in enumerate(completions)
    ]
    return ChatCompletion(
        id=meta.id,
        created=meta.created,
        model=meta.model,
        choices=choices,
        usage=usage(completions),
    )


async def results(handles: Sequence[Handle], is_disconnected: Callable) -> list[Completion]:
    """Every handle's completion; cancels them all if the client goes away first."""
    gathered = asyncio.ensure_future(asyncio.gather(*(h.result() for h in handles)))
    try:
        while True:
            done, _ = await asyncio.wait({gathered}, timeout=0.5)
            if done:
                return gathered.result()
            if await is_disconnected():
                raise asyncio.CancelledError("the client disconnected")
    finally:
        if not gathered.done():
            gathered.cancel()
        for handle in handles:
            if handle.completion is None:
                handle.cancel()


class ChunkWriter:
    """The `data: {chunk}` lines of one streamed completion.

    Content chunks, one per token and choice, are the bulk of a stream: each choice's is
    rendered once through the schema with a placeholder for the text, and a token's chunk
    is that template with the text JSON-encoded in (the same bytes as `chunk` gives)."""

    _SLOT = "ocelli-delta-slot"

    def __init__(self, meta: ResponseMeta, include_usage: bool) -> None:
        self.meta = meta
        # With include_usage every chunk carries "usage" (null until the last), as OpenAI's.
        self._excluded = None if include_usage else {"usage"}
        self._templates: dict[int, list[str] | None] = {}  # (head, tail) by choice

    def chunk(self, choices: list[ChunkChoice], usage_: Usage | None = None) -> str:
        body = ChatCompletionChunk(
            id=self.meta.id,
            created=self.meta.created,
            model=self.meta.model,
            choices=choices,
            usage=usage_,
        )
        return f"data: {body.model_dump_json(exclude=self._excluded)}\n\n"

    def content(self, index: int, text: str) -> str:
        """The chunk carrying `text` as choice `index`'s next piece of content."""
        if index not in self._templates:
            rendered = self.chunk([ChunkChoice(index=index, delta=Delta(content=self._SLOT))])
            slot = json.dumps(self._SLOT)
            # A model name or id containing the placeholder would make the split ambiguous.
            unique = rendered.count(slot) == 1
            self._templates[index] = rendered.split(slot) if unique else None
        template = self._templates[index]
        if template is None:
            return self.chunk([ChunkChoice(index=index, delta=Delta(content=text))])
        head, tail = template
        return head + json.dumps(text, ensure_ascii=False) + tail


async def event_stream(
    meta: ResponseMeta,
    handles: Sequence[Handle],
    include_usage: bool,
    on_first_token: Callable[[], None],
) -> AsyncIterator[str]:
    """SSE lines of a streamed completion; choices interleave as their tokens come.

    Each item is one write to the socket: the deltas that were ready together, with a
    choice's finish chunk; the last choice's end, the usage and `[DONE]` go out together."""
    writer = ChunkWriter(meta, include_usage)
    first = True
    ending = ""
    try:
        yield writer.chunk(
            [
                ChunkChoice(index=i, delta=Delta(role="assistant", content=""))
                for i in range(len(handles))
            ]
        )
        remaining = len(handles)
        async for index, deltas, completion in _batches(handles):
            if deltas and first:
                on_first_token()
                first = False
            lines = [writer.content(index, delta) for delta in deltas]
            if completion is not None:
                remaining -= 1
                finish = ChunkChoice(
                    index=index, delta=Delta(), finish_reason=completion.finish_reason
                )
                lines.append(writer.chunk([finish]))
            if remaining:
                yield "".join(lines)
            else:
                ending = "".join(lines)
        if include_usage:
            completions = [h.completion for h in handles if h.completion is not None]
            ending += writer.chunk([], usage(completions))
    except ApiError as exc:
        # Headers are sent: the error travels as an event, as OpenAI's API does.
        ending += f"data: {json.dumps(exc.body())}\n\n"
    finally:
        for handle in handles:
            if handle.completion is None:
                handle.cancel()
    yield ending + "data: [DONE]\n\n"


async def _batches(
    handles: Sequence[Handle],
) -> AsyncIterator[tuple[int, list[str], Completion | None]]:
    """(choice index, deltas ready together, the completion if the choice just ended)."""
    if len(handles) == 1:  # the usual case: no merging
        handle = handles[0]
        async for deltas in handle.delta_batches():
            yield 0, deltas, handle.completion
        return
    queue: asyncio.Queue[tuple[int, list[str], Completion | None, ApiError | None]]
    queue = asyncio.Queue()

    async def pump(index: int, handle: Handle) -> None:
        try:
            async for deltas in handle.delta_batches():
                queue.put_nowait((index, deltas, handle.completion, None))
        except ApiError as exc:
            queue.put_nowait((index, [], None, exc))

    tasks = [asyncio.create_task(pump(i, h)) for i, h in enumerate(handles)]
    try:
        remaining = len(handles)
        while remaining:
            index, deltas, completion, error = await queue.get()
            if error is not None:
                raise error
            remaining -= completion is not None
            yield index, deltas, completion
    finally:
        for task in tasks:
            task.cancel()
