import io

import pytest

from ocelli.data.images import load_image
from ocelli.errors import ImageError
from ocelli.generate import chat_command
from ocelli.generate.chat_cli import HELP

GENERATION = {"max_new_tokens": 5}


def _run(model_dir, images, stdin=None, question=None):
    out = io.StringIO()
    chat_command(
        model_dir,
        images,
        question=question,
        input_stream=io.StringIO(stdin or ""),
        output_stream=out,
        **GENERATION,
    )
    return out.getvalue()


def test_one_question_prints_one_answer(model_dir, pipeline, image_paths):
    out = _run(model_dir, [image_paths[0]], question="What colour is the cube?")
    assert out == pipeline.chat([image_paths[0]], "What colour is the cube?", **GENERATION) + "\n"


def test_bad_image_fails_before_loading_the_model(tmp_path):
    with pytest.raises(ImageError, match="nope.png"):
        chat_command(tmp_path / "no-model", [tmp_path / "nope.png"], question="hi")


def test_interactive_loop_keeps_history_and_images(model_dir, pipeline, image_paths, tmp_path):
    first, second, missing = image_paths[0], image_paths[1], tmp_path / "nope.png"
    stdin = (
        f"hello\n\n/image {missing}\n/image {second}\nwhat now?\n"
        "/frobnicate\n/reset\nhello\n/exit\nnever read\n"
    )
    out = _run(model_dir, [first], stdin)

    turn_one = [{"role": "user", "content": "<image>\nhello"}]
    answer_one = pipeline.respond(turn_one, [first], **GENERATION)
    turn_two = turn_one + [
        {"role": "assistant", "content": answer_one},
        {"role": "user", "content": "<image>\nwhat now?"},
    ]
    answer_two = pipeline.respond(turn_two, [first, second], **GENERATION)
    with pytest.raises(ImageError) as missing_error:
        load_image(missing)
    assert out.splitlines() == [
        f"ocelli chat with 1 image(s). {HELP}",
        answer_one,
        f"error: {missing_error.value}",
        f"added {second}; it goes with your next question.",
        answer_two,  # the history and both images were sent
        f"unknown command /frobnicate; {HELP}",
        "conversation reset; 1 image(s).",
        answer_one,  # after /reset the history is gone
    ]


def test_end_of_input_ends_the_loop(model_dir, image_paths):
    assert _run(model_dir, [image_paths[0]], "") == f"ocelli chat with 1 image(s). {HELP}\n"
