"""Streamed responses without a server: chunks rendered from a template are the schema's
own bytes, and deltas that wait together leave in one write."""

from __future__ import annotations

import asyncio
import json

import pytest

from ocelli.serve.engine import Completion, Handle
from ocelli.serve.errors import InternalError
from ocelli.serve.responses import ChunkWriter, ResponseMeta, event_stream
from ocelli.serve.schema import ChunkChoice, Delta

TEXTS = [
    "a",
    " the cube",
    'say "hi"\\ now',
    "line\nbreak\ttab\r\x00\x1f\x7f",
    "有几个球？",
    "😀 \u2028 \ufffd",
    ChunkWriter._SLOT,
]


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("model", ["tiny", f"x{ChunkWriter._SLOT}"])
def test_content_chunks_are_the_schemas_bytes(include_usage, model):
    writer = ChunkWriter(ResponseMeta(model=model), include_usage)
    for index in (0, 2):
        for text in TEXTS:
            expected = writer.chunk([ChunkChoice(index=index, delta=Delta(content=text))])
            assert writer.content(index, text) == expected


def completion(text: str, reason: str = "length") -> Completion:
    return Completion(text, reason, prompt_tokens=5, completion_tokens=len(text))


async def stream_items(handles, events, include_usage=True) -> list[str]:
    """The items `event_stream` yields when `events` (handle, kind, value) are all
    waiting before the stream reads any."""
    for handle, kind, value in events:
        handle._send(kind, value)
    meta = ResponseMeta(model="tiny")
    return [item async for item in event_stream(meta, handles, include_usage, lambda: None)]


def sse_events(items: list[str]) -> list[str]:
    return [event for event in "".join(items).split("\n\n") if event]


def test_waiting_deltas_and_the_end_leave_in_one_write():
    async def scenario():
        handle = Handle(asyncio.get_running_loop())
        events = [(handle, "delta", d) for d in ("The", " cube", " is red")]
        return await stream_items([handle], [*events, (handle, "done", completion("abc"))])

    items = asyncio.run(scenario())
    assert len(items) == 2  # the role chunk, then everything else
    events = sse_events(items)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"]["content"] or "" for c in chunks[1:-1])
    assert text == "The cube is red"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


def test_choices_interleave_and_each_ends_once():
    async def scenario():
        loop = asyncio.get_running_loop()
        first, second = Handle(loop), Handle(loop)
        events = [
            (first, "delta", "one"),
            (second, "delta", "two"),
            (first, "done", completion("one", "stop")),
            (second, "delta", " more"),
            (second, "done", completion("two more")),
        ]
        return await stream_items([first, second], events, include_usage=False)

    events = sse_events(asyncio.run(scenario()))
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    texts, finishes = {0: "", 1: ""}, {0: [], 1: []}
    for chunk in chunks[1:]:
        [choice] = chunk["choices"]
        texts[choice["index"]] += choice["delta"].get("content") or ""
        if choice["finish_reason"]:
            finishes[choice["index"]].append(choice["finish_reason"])
    assert texts == {0: "one", 1: "two more"}
    assert finishes == {0: ["stop"], 1: ["length"]}


def test_an_engine_error_mid_stream_is_an_event_before_done():
    async def scenario():
        handle = Handle(asyncio.get_running_loop())
        error = InternalError("generation failed (RuntimeError: boom); see the server log")
        return await stream_items(
            [handle], [(handle, "delta", "partial"), (handle, "error", error)]
        )

    events = sse_events(asyncio.run(scenario()))
    assert json.loads(events[1].removeprefix("data: "))["choices"][0]["delta"]["content"] == (
        "partial"
    )
    assert "boom" in json.loads(events[2].removeprefix("data: "))["error"]["message"]
    assert events[-1] == "data: [DONE]"
