"""The one chat template of ocelli, and the message shapes it accepts.

Training, generation, evaluation and serving all render conversations with
`CHAT_TEMPLATE` (through the tokenizer's `apply_chat_template`), so the text a model
is trained on is byte for byte the text it is prompted with. The template is ChatML:

    <|im_start|>system\\n...<|im_end|>\\n
    <|im_start|>user\\n<image>\\nWhat colour is the cube?<|im_end|>\\n
    <|im_start|>assistant\\nRed.<|im_end|>\\n

The `{% generation %}` block marks what the model learns to produce: the assistant's
content and its closing `<|im_end|>` (so it learns to stop), not the header before it
nor the newline after it.

Messages are `{"role": "system"|"user"|"assistant", "content": str}`; images sit in the
text as `<image>` placeholders, one per image, in order. OpenAI-style content lists
(`[{"type": "image"}, {"type": "text", "text": ...}]`) are converted to that form by
`normalize_messages` before rendering.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ocelli.errors import DataError

IMAGE_TOKEN = "<image>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ROLES = ("system", "user", "assistant")

# Line breaks are written as '\n' inside expressions so the template does not depend on
# Jinja's whitespace trimming, which transformers configures differently from Jinja's
# defaults (trim_blocks and lstrip_blocks are on).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + message['role'] + '; use system, user or assistant') }}"
    "{% endif %}"
    "{% if message['content'] is not string %}"
    "{{ raise_exception('message content must be a string with <image> placeholders') }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}"
    "{{ message['content'] + '<|im_end|>' }}"
    "{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# LLaVA-format speakers ("from") and the roles they map to.
LLAVA_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


def render_chat(messages: Sequence[dict[str, Any]], add_generation_prompt: bool = False) -> str:
    """Render messages to text with `CHAT_TEMPLATE`, exactly as the tokenizer would.

    Uses transformers' own Jinja environment (the one `apply_chat_template` uses), so
    this is not a second implementation of the template, only a way to render it
    without a tokenizer at hand.
    """
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[normalize_messages(messages)],
        chat_template=CHAT_TEMPLATE,
        add_generation_prompt=add_generation_prompt,
    )
    return rendered[0]


def normalize_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Check roles and convert OpenAI-style content lists to `<image>` placeholder text.

    Returns new message dicts holding only "role" and "content"; raises DataError
    naming the message at fault.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise DataError(
            f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}"
        )
    normalized = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise DataError(
                f"message {index}: needs 'role' and 'content' keys, got {message!r:.80}"
            )
        role = message["role"]
        if role not in ROLES:
            raise DataError(
                f"message {index}: unknown role {role!r}; use one of {', '.join(ROLES)}"
            )
        normalized.append({"role": role, "content": _content_text(message["content"], index)})
    return normalized


def _content_text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise DataError(
            f"message {index}: content must be a string or a list of "
            f"{{'type': 'text'|'image'}} parts, got {type(content).__name__}"
        )
    text = ""
    for part_index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise DataError(
                    f"message {index}, part {part_index}: text part needs a string 'text'"
                )
            # LLaVA's convention: an image is followed by a line break before its question.
            text += ("\n" if text.endswith(IMAGE_TOKEN) else "") + part["text"]
        elif kind in ("image", "image_url"):
            # "<image>\n<image>\ntext": one "<image>\n" per image, as
            # `OcelliPipeline.conversation` writes it.
            text += ("\n" if text.endswith(IMAGE_TOKEN) else "") + IMAGE_TOKEN
        else:
            raise DataError(
                f"message {index}, part {part_index}: unknown content part {part!r:.80}; "
                "use {'type': 'text', 'text': ...} or {'type': 'image'}"
            )
    return text


def count_image_placeholders(messages: Sequence[dict[str, Any]]) -> int:
    """How many `<image>` placeholders the (normalized) messages hold."""
    return sum(message["content"].count(IMAGE_TOKEN) for message in normalize_messages(messages))


def llava_to_messages(conversations: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Map LLaVA turns `{"from": "human"|"gpt"|"system", "value": str}` to chat messages."""
    messages = []
    for index, turn in enumerate(conversations):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise DataError(f"turn {index}: needs 'from' and a string 'value', got {turn!r:.80}")
        role = LLAVA_ROLES.get(turn.get("from"))
        if role is None:
            raise DataError(
                f"turn {index}: unknown speaker {turn.get('from')!r}; "
                f"use one of {', '.join(sorted(LLAVA_ROLES))}"
            )
        messages.append({"role": role, "content": turn["value"]})
    return messages
