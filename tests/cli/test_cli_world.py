"""`ocelli world generate` and `ocelli world show`: files out, or a clear error and no
half-written output directory."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


def test_generate_then_show(cli, tmp_path):
    world = tmp_path / "world"
    result = cli(
        "world", "generate", "--out", world, "--num-images", 6, "--seed", 3, "--lang", "en,zh"
    )
    assert result.code == 0, result.err

    images = sorted(path.name for path in (world / "images").iterdir())
    assert images == [f"train_{index:06d}.png" for index in range(6)]
    for name in (
        "scenes.jsonl",
        "questions.jsonl",
        "conversations.json",
        "captions.jsonl",
        "describe.json",
        "text_conversations.json",
        "corpus.txt",
    ):
        assert (world / name).stat().st_size > 0, name
    meta = json.loads((world / "meta.json").read_text(encoding="utf-8"))
    assert (meta["format"], meta["split"], meta["seed"]) == ("ocelli.world", "train", 3)
    assert meta["counts"]["images"] == 6
    assert set(meta["counts"]["questions_by_lang_and_type"]) == {"en", "zh"}
    assert meta["provenance"]["ocelli_version"]
    assert len((world / "scenes.jsonl").read_text(encoding="utf-8").splitlines()) == 6

    shown = cli("world", "show", world, "--num-images", 4)
    assert shown.code == 0, shown.err
    sheet = (world / "contact_sheet.html").read_text(encoding="utf-8")
    assert sheet.startswith("<!DOCTYPE html>")
    assert sheet.count("data:image/png;base64,") == 4  # the images are embedded


def test_generate_again_replaces_an_earlier_world(cli, tmp_path):
    world = tmp_path / "world"
    assert cli("world", "generate", "--out", world, "--num-images", 3).code == 0
    assert cli("world", "generate", "--out", world, "--num-images", 2).code == 0
    assert len(list((world / "images").iterdir())) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["world"]  # no temp dirs left


@pytest.fixture
def config_files(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "malformed.yaml").write_text("max_objects: [3, 4\n", encoding="utf-8")
    return configs


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--num-images", "0"], ["num_images must be a positive integer, got 0"]),
        (["--num-images", "-3"], ["num_images must be a positive integer, got -3"]),
        (
            ["--num-images", "2", "--split", "Not A Split"],
            ["split 'Not A Split'", "train, val, test"],
        ),
        (["--num-images", "2", "--set", "nonexistent_key=1"], ["unknown key(s) nonexistent_key"]),
        (["--num-images", "2", "--set", "min_objects=abc"], ["min_objects", "expected an integer"]),
        (["--num-images", "2", "--set", "no_equals_sign"], ["must look like key.sub=value"]),
        (
            ["--num-images", "2", "--config", "{configs}/missing.yaml"],
            ["missing.yaml does not exist"],
        ),
        (
            ["--num-images", "2", "--config", "{configs}/malformed.yaml"],
            ["malformed.yaml is not valid YAML"],
        ),
        (["--num-images", "2", "--lang", "xx"], ["langs: unknown name(s) 'xx'", "en, zh"]),
        (["--num-images", "2", "--image-size", "3"], ["image_size must be between 16 and 1024"]),
    ],
    ids=[
        "zero-images",
        "negative-images",
        "bad-split",
        "unknown-key",
        "bad-value",
        "bad-override",
        "missing-config",
        "malformed-config",
        "unknown-lang",
        "tiny-image",
    ],
)
def test_generate_bad_input_fails_cleanly(cli, tmp_path, config_files, args, fragments):
    out = tmp_path / "out" / "world"
    args = [arg.format(configs=config_files) for arg in args]
    cli("world", "generate", "--out", out, *args).assert_user_error(*fragments)
    assert not (tmp_path / "out").exists()  # nothing created, not even the parent


def test_generate_refuses_to_replace_a_directory_that_is_not_a_world(cli, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me", encoding="utf-8")
    cli("world", "generate", "--out", precious, "--num-images", 2).assert_user_error(
        "is not an ocelli world dataset"
    )
    assert [path.name for path in precious.iterdir()] == ["notes.txt"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["precious"]


def test_non_numeric_count_is_a_usage_error(cli, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli("world", "generate", "--out", tmp_path / "w", "--num-images", "six")
    assert exit_info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [([], "a world dataset?"), (["--num-images", "0"], "num_images must be positive")],
)
def test_show_bad_input_fails_cleanly(cli, tmp_path, args, fragment):
    cli("world", "show", tmp_path, *args).assert_user_error(fragment)
    assert list(tmp_path.iterdir()) == []


def test_real_process_exits_2_without_traceback(tmp_path):
    """The installed entry point, not just main(): exit status and stderr as a user sees them."""
    entry_point = Path(sys.executable).with_name("ocelli")
    command = [
        str(entry_point),
        "world",
        "generate",
        "--out",
        str(tmp_path / "w"),
        "--num-images",
        "-3",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: num_images must be a positive integer, got -3"
    assert done.stdout == ""
    assert not (tmp_path / "w").exists()
