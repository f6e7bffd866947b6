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


async def event_stream(
    meta: ResponseMeta,
    handles: Sequence[Handle],
    include_usage: bool,
    on_first_token: Callable[[], None],
) -> AsyncIterator[str]:
    """SSE lines of a streamed completion; choices interleave as their tokens come."""

    def chunk(choices: list[ChunkChoice], usage_: Usage | None = None) -> str:
        body = ChatCompletionChunk(
            id=meta.id, created=meta.created, model=meta.model, choices=choices, usage=usage_
        )
        # With include_usage every chunk carries "usage" (null until the last), as OpenAI's.
        excluded = None if include_usage else {"usage"}
        return f"data: {body.model_dump_json(exclude=excluded)}\n\n"

    first = True
    try:
        yield chunk(
            [
                ChunkChoice(index=i, delta=Delta(role="assistant", content=""))
                for i in range(len(handles))
            ]
        )
        async for index, delta, completion in _merged(handles):
            if completion is not None:
                finish = ChunkChoice(
                    index=index, delta=Delta(), finish_reason=completion.finish_reason
                )
                yield chunk([finish])
                continue
            if first:
                on_first_token()
                first = False
            yield chunk([ChunkChoice(index=index, delta=Delta(content=delta))])
        if include_usage:
            yield chunk([], usage([h.completion for h in handles if h.completion is not None]))
    except ApiError as exc:
        # Headers are sent: the error travels as an event, as OpenAI's API does.
        yield f"data: {json.dumps(exc.body())}\n\n"
    finally:
        for handle in handles:
            if handle.completion is None:
                handle.cancel()
    yield "data: [DONE]\n\n"


async def _merged(
    handles: Sequence[Handle],
) -> AsyncIterator[tuple[int, str, Completion | None]]:
    """(choice index, delta, None) as text comes, then (index, "", completion) per choice."""
    queue: asyncio.Queue[tuple[int, str, Completion | None, ApiError | None]] = asyncio.Queue()

    async def pump(index: int, handle: Handle) -> None:
        try:
            async for delta in handle.deltas():
                queue.put_nowait((index, delta, None, None))
            queue.put_nowait((index, "", handle.completion, None))
        except ApiError as exc:
            queue.put_nowait((index, "", None, exc))

    tasks = [asyncio.create_task(pump(i, h)) for i, h in enumerate(handles)]
    try:
        remaining = len(handles)
        while remaining:
            index, delta, completion, error = await queue.get()
            if error is not None:
                raise error
            remaining -= completion is not None
            yield index, delta, completion
    finally:
        for task in tasks:
            task.cancel()
