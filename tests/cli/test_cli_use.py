"""`ocelli chat`, `eval` and `export` on bad input: exit 2 with a message saying which
input was wrong, checked before a model is loaded where that is possible. The same
commands on a trained model are in test_cli_end_to_end.py."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(path)
    return path


def test_chat_missing_model_dir(cli, tmp_path, image):
    cli("chat", "--model", tmp_path / "no-model", "--image", image, "How many?").assert_user_error(
        f"model directory {tmp_path / 'no-model'} not found"
    )


def test_chat_directory_without_a_model(cli, tmp_path, image):
    cli("chat", "--model", tmp_path, "--image", image, "How many?").assert_user_error(
        "has no config.json"
    )


def test_chat_missing_image(cli, tmp_path):
    missing = tmp_path / "nope.png"
    cli("chat", "--model", tmp_path, "--image", missing, "How many?").assert_user_error(
        f"image file {missing} not found"
    )


@pytest.mark.parametrize("content", [b"garbage\x00\x01 not a png", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_chat_corrupt_image(cli, tmp_path, content):
    corrupt = tmp_path / "x.png"
    corrupt.write_bytes(content)
    cli("chat", "--model", tmp_path, "--image", corrupt, "How many?").assert_user_error(
        f"image file {corrupt}"
    )


@pytest.mark.parametrize("option", ["--max-new-tokens", "--temperature"])
def test_chat_generation_options_are_checked(cli, tmp_path, image, capsys, option):
    value = "0" if option == "--max-new-tokens" else "hot"
    with pytest.raises(SystemExit) as exit_info:
        cli("chat", "--model", tmp_path, "--image", image, option, value, "How many?")
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err


def test_eval_data_without_questions_fails_before_loading_the_model(cli, tmp_path):
    data = tmp_path / "not-a-world"
    data.mkdir()
    result = cli(
        "eval", "--model", tmp_path / "no-model", "--data", data, "--out", tmp_path / "eval"
    )
    result.assert_user_error(f"{data / 'questions.jsonl'} not found", "ocelli world generate")
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("option", ["--limit", "--batch-size"])
def test_eval_counts_must_be_positive(cli, tmp_path, capsys, option):
    with pytest.raises(SystemExit) as exit_info:
        cli("eval", "--model", tmp_path, "--data", tmp_path, option, "0")
    assert exit_info.value.code == 2
    assert f"{option}: expected a positive integer, got 0" in capsys.readouterr().err


def test_export_missing_model(cli, tmp_path):
    cli("export", "--model", tmp_path / "no-model", "--out", tmp_path / "export").assert_user_error(
        "is not a directory"
    )
    assert not (tmp_path / "export").exists()
