"""`ocelli chat`: one answer to a question, or a multi-turn conversation on stdin.

In the interactive loop, `/image PATH` adds an image (placed before the next question),
`/reset` forgets the conversation and the added images, `/exit` (or end of input) quits.
Errors a user can fix (a bad image path, a prompt grown past the model's context) are
printed and the conversation goes on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from transformers.utils import logging as hf_logging

from ocelli.data.images import load_image
from ocelli.errors import OcelliError
from ocelli.generate.pipeline import OcelliPipeline, load

HELP = "/image PATH adds an image, /reset starts over, /exit quits."


def chat_command(
    model_dir: str | os.PathLike,
    image_paths: Sequence[str | os.PathLike],
    question: str | None = None,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    system: str | None = None,
    device: str = "cpu",
    seed: int | None = None,
    input_stream: TextIO | None = None,
    output_stream: TextIO | None = None,
    correct: bool = False,
) -> int:
    """Print the answer to `question`, or chat interactively without one. Returns 0.

    A temperature above 0 samples (with `seed`, reproducibly); 0 decodes greedily.
    `correct` checks each answer against the last image (ocelli.align.corrector) and
    prints the corrected answer, with a note when it cannot be verified."""
    output_stream = output_stream or sys.stdout
    for path in image_paths:
        load_image(path)  # fail on a bad image before spending time loading the model
    # Loading bars would be the only noise around the answers; this is a CLI process.
    hf_logging.disable_progress_bar()
    pipeline = load(model_dir, device=device)
    generation = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
    finish = _corrector(pipeline, output_stream) if correct else (lambda images, q, a: a)
    if question is not None:
        answer = pipeline.chat(list(image_paths), question, system=system, **generation)
        print(finish(list(image_paths), question, answer), file=output_stream, flush=True)
        return 0
    _interactive(
        pipeline,
        list(image_paths),
        system,
        generation,
        input_stream or sys.stdin,
        output_stream,
        finish,
    )
    return 0


def _interactive(
    pipeline: OcelliPipeline,
    initial_images: list[str | os.PathLike],
    system: str | None,
    generation: dict[str, Any],
    input_stream: TextIO,
    output_stream: TextIO,
    finish: Any = None,
) -> None:
    def say(text: str) -> None:
        print(text, file=output_stream, flush=True)

    show_prompt = input_stream.isatty()
    images, history = list(initial_images), []
    say(f"ocelli chat with {len(images)} image(s). {HELP}")
    while True:
        if show_prompt:
            print("> ", end="", file=output_stream, flush=True)
        line = input_stream.readline()
        if not line or line.strip() == "/exit":
            return
        line = line.strip()
        if not line:
            continue
        if line == "/reset":
            images, history = list(initial_images), []
            say(f"conversation reset; {len(images)} image(s).")
        elif line == "/image" or line.startswith("/image "):
            images = _add_image(line[len("/image") :].strip(), images, say)
        elif line.startswith("/"):
            say(f"unknown command {line.split()[0]}; {HELP}")
        else:
            try:
                messages = pipeline.conversation(
                    images, line, history, system=system if not history else None
                )
                answer = pipeline.respond(messages, images, **generation)
            except OcelliError as exc:
                say(f"error: {exc}")
                continue
            history = messages + [{"role": "assistant", "content": answer}]
            say(finish(images, line, answer) if finish else answer)


def _corrector(pipeline: OcelliPipeline, output_stream: TextIO) -> Any:
    """answer -> the corrected answer about the last image (a note if unverifiable)."""
    from ocelli.align.corrector import Corrector

    corrector = Corrector(pipeline)

    def finish(images: list, question: str, answer: str) -> str:
        if not images:
            return answer + "\n(not corrected: no image to check the answer against)"
        result = corrector.correct(images[-1], answer, question)
        if not result.verified:
            return answer + f"\n(not corrected: {result.reason})"
        return result.text

    return finish


def _add_image(path: str, images: list, say: Any) -> list:
    if not path:
        say("usage: /image PATH")
        return images
    try:
        load_image(path)
    except OcelliError as exc:
        say(f"error: {exc}")
        return images
    say(f"added {path}; it goes with your next question.")
    return images + [path]
