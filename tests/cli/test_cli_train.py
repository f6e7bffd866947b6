"""`ocelli train` and `ocelli quickstart` on bad input: a clear error before any stage
trains, and nothing written that a later run would mistake for finished work."""

import pytest

from ocelli.train.recipe import STAGES, available_recipes


@pytest.fixture
def malformed_recipe(tmp_path):
    path = tmp_path / "malformed.yaml"
    path.write_text("model: {vision: convnext-tiny\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--recipe", "nope"], ["unknown recipe 'nope'", ", ".join(available_recipes())]),
        (["--recipe", "{tmp}/missing.yaml"], ["missing.yaml does not exist"]),
        (["--recipe", "{tmp}/malformed.yaml"], ["malformed.yaml is not valid YAML"]),
        (["--set", "instruct.train.lrr=1"], ["instruct.train", "unknown key(s) lrr"]),
        (["--set", "instruct.train.lr=fast"], ["instruct.train.lr", "'fast'"]),
        (["--set", "world.train_images"], ["must look like key.sub=value"]),
        (["--stage", "bogus"], ["unknown stage(s) bogus", ", ".join(STAGES)]),
        (["--connector", "nope"], ["unknown connector 'nope'", "linear, mlp"]),
        (["--vision", "nonesuch"], ["unknown vision encoder 'nonesuch'", "siglip-tiny"]),
        (
            ["--language-model", "./no/such/lm"],
            ["language model checkpoint directory", "does not exist"],
        ),
    ],
    ids=[
        "unknown-recipe",
        "missing-recipe-file",
        "malformed-recipe",
        "unknown-key",
        "bad-value",
        "bad-override",
        "unknown-stage",
        "unknown-connector",
        "unknown-encoder",
        "missing-lm-dir",
    ],
)
def test_train_bad_input_fails_before_writing_anything(
    cli, tmp_path, malformed_recipe, args, fragments
):
    """Checked when the recipe is read: even the world is not generated."""
    run_dir = tmp_path / "run"
    args = [arg.format(tmp=tmp_path) for arg in args]
    cli("train", "--out", run_dir, "--max-steps", 1, *args).assert_user_error(*fragments)
    assert not run_dir.exists()


def test_quickstart_checks_the_recipe_too(cli, tmp_path):
    run_dir = tmp_path / "run"
    cli("quickstart", "--out", run_dir, "--set", "model.connector=nope").assert_user_error(
        "unknown connector 'nope'"
    )
    cli("quickstart", "--out", run_dir, "--recipe", "nope").assert_user_error("unknown recipe")
    cli("quickstart", "--out", run_dir, "--set", "eval.suite=[mmee]").assert_user_error(
        "eval.suite: unknown task(s) 'mmee'; registered tasks: ", "mmbench_circular"
    )
    assert not run_dir.exists()


@pytest.mark.parametrize("steps", ["0", "-2", "many"])
def test_max_steps_must_be_a_positive_integer(cli, tmp_path, capsys, steps):
    with pytest.raises(SystemExit) as exit_info:
        cli("train", "--out", tmp_path / "run", "--max-steps", steps)
    assert exit_info.value.code == 2
    assert "--max-steps: expected a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_later_stage_without_the_earlier_ones_names_the_missing_directory(
    cli, tmp_path, tiny_recipe_args
):
    run_dir = tmp_path / "run"
    result = cli(
        "train",
        "--out",
        run_dir,
        "--max-steps",
        1,
        "--stage",
        "instruct",
        *tiny_recipe_args,
        "--set",
        "world.train_images=8",
    )
    result.assert_user_error(
        str(run_dir / "perceive" / "final"), "stage 'instruct'", "run the earlier stages first"
    )
    # The world and tokenizer it made are complete and reused by the next run; no stage
    # directory was started.
    assert sorted(path.name for path in run_dir.iterdir()) == ["tokenizer", "world"]
    assert (run_dir / "world" / "train" / "meta.json").is_file()
