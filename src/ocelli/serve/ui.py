"""The web chat: a Gradio page over the same engine as the API.

    ocelli ui --model runs/quickstart/instruct      # http://127.0.0.1:7860/ui
    ocelli serve --model ...                        # the API, and the page at /ui

Each turn is turned into an OpenAI chat-completions request (images as data URLs) and
goes through the API's own `RequestPreparer`, slot accounting and engine: the page uses
the one chat template, the same limits and the same batch as every API client, and its
answers stream token by token. Upload images with the paperclip or paste them into the
box; earlier turns, images included, are sent again with each question.

When the server has API keys, the page asks for one as its password."""

from __future__ import annotations

import base64
import hmac
import mimetypes
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ocelli.errors import OcelliError
from ocelli.serve.errors import ApiError, from_library_error
from ocelli.serve.schema import ChatCompletionRequest

UI_KEY = "ui"  # the slot-accounting key of the page's requests when the server has no keys
TITLE = "ocelli chat"


def image_data_url(path: str | os.PathLike) -> str:
    """An uploaded file as a data URL; the preparer checks its type, size and pixels."""
    media_type = mimetypes.guess_type(str(path))[0] or "image/png"
    payload = base64.b64encode(Path(path).read_bytes()).decode()
    return f"data:{media_type};base64,{payload}"


def _parts(content: Any) -> list[dict[str, Any]]:
    """OpenAI content parts of one Gradio chat message (a string, a file, or a list)."""
    items = content if isinstance(content, (list, tuple)) else [content]
    parts: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, str):
            if item:
                parts.append({"type": "text", "text": item})
        elif isinstance(item, dict) and item.get("type") == "text":
            parts.append({"type": "text", "text": item["text"]})
        elif isinstance(item, dict):
            file = item.get("file", item)
            path = file.get("path") if isinstance(file, dict) else file
            if path:
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(path)}})
    return parts


def chat_messages(
    message: dict[str, Any], history: list[dict[str, Any]], system: str = ""
) -> list[dict[str, Any]]:
    """The OpenAI messages of a conversation: the system prompt, Gradio's history (one
    message per text or file), then the new message (`{"text": ..., "files": [...]}`).
    Consecutive messages of one role are joined, as the user sent them in one turn."""
    turns = [(m["role"], _parts(m["content"])) for m in history]
    files = [f if isinstance(f, dict) else {"path": f} for f in message.get("files") or []]
    turns.append(("user", _parts(files + [message.get("text") or ""])))
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for role, parts in turns:
        if messages and messages[-1]["role"] == role and role != "system":
            messages[-1]["content"] += parts
        else:
            messages.append({"role": role, "content": parts})
    for message_ in messages:
        if message_["role"] == "assistant":  # the API takes assistant turns as plain text
            message_["content"] = "".join(p.get("text", "") for p in message_["content"])
    return messages


def chat_responder(state: Any):
    """The page's chat function: answers through the server's preparer and engine,
    yielding the answer so far after each token. (A plain async generator function:
    Gradio streams only what it recognises as one.)"""
    import gradio as gr

    async def respond(
        message: dict[str, Any],
        history: list[dict[str, Any]],
        max_tokens: float,
        temperature: float,
        top_p: float,
        system: str = "",
    ) -> AsyncIterator[str]:
        request = ChatCompletionRequest(
            model=state.config.served_model_name,
            messages=chat_messages(message, history, system),
            max_tokens=int(max_tokens),
            temperature=temperature,
            top_p=top_p,
        )
        key = state.config.api_keys[0] if state.config.api_keys else UI_KEY
        try:
            state.acquire(key)
        except ApiError as exc:
            raise gr.Error(exc.message) from None
        handle = None
        try:
            prepared = await state.preparer.prepare(request)
            handle = state.engine.submit(prepared.prompt, prepared.params[0])
            answer = ""
            async for delta in handle.deltas():
                answer += delta
                yield answer
        except OcelliError as exc:
            error = exc if isinstance(exc, ApiError) else from_library_error(exc)
            raise gr.Error(error.message) from None
        finally:
            if handle is not None and handle.completion is None:
                handle.cancel()
            state.release(key)

    return respond


def build_ui(state: Any):
    """The Gradio Blocks of the chat page for a server's state."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    limit = state.config.max_tokens_limit
    settings = [
        gr.Slider(1, limit, value=min(256, limit), step=1, label="max tokens"),
        gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="temperature (0: greedy)"),
        gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top_p"),
        gr.Textbox("", label="system prompt", lines=2),
    ]
    return gr.ChatInterface(
        chat_responder(state),
        multimodal=True,
        textbox=gr.MultimodalTextbox(
            file_types=["image"],
            file_count="multiple",
            placeholder="Ask about an image: attach or paste one, then type",
            elem_id="ocelli-input",
        ),
        chatbot=gr.Chatbot(label=state.config.served_model_name, elem_id="ocelli-chat"),
        additional_inputs=settings,
        additional_inputs_accordion=gr.Accordion("generation settings", open=False),
        title=TITLE,
        # The engine batches; Gradio's default of one event at a time would serialise.
        concurrency_limit=state.config.max_concurrent_requests,
        analytics_enabled=False,
        api_visibility="private",
    )


def mount_ui(app: FastAPI, state: Any, path: str = "/ui") -> FastAPI:
    """Serve the chat page at `path` of `app` (the API's app, sharing its engine)."""
    import gradio as gr

    keys = state.config.api_keys

    def check_key(username: str, password: str) -> bool:
        return any(hmac.compare_digest(password.encode(), key.encode()) for key in keys)

    # System fonts: the page must work offline, so nothing is fetched from font hosts.
    theme = gr.themes.Default(
        font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    return gr.mount_gradio_app(
        app,
        build_ui(state),
        path=path,
        server_name=state.config.host,
        server_port=state.config.port,
        footer_links=[],
        auth=check_key if keys else None,
        auth_message="This server needs an API key: give any user name and the key as password.",
        max_file_size=state.config.max_image_bytes,
        ssr_mode=False,
        # The chat history's image URLs are built from this; without it they miss the
        # mount path and the browser gets a 404 for `/gradio_api/file=...`.
        root_path=path,
        theme=theme,
    )
