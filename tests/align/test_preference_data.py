"""Preference pairs from the world's ground truth: right by construction, spans exact,
deterministic per seed, loadable with `datasets`, and clear errors on bad input."""

import json

import pytest

from ocelli.align.pairs import load_pairs
from ocelli.align.preference_data import (
    KINDS,
    build_preference_pairs,
    diff_spans,
    write_preference_data,
)
from ocelli.errors import ConfigError, DataError, ImageError
from ocelli.eval.metrics import score_description
from ocelli.world import load_scenes


@pytest.fixture(scope="module")
def pairs_and_summary(world_dir):
    return build_preference_pairs(world_dir, seed=0)


def test_every_kind_is_built(pairs_and_summary):
    pairs, summary = pairs_and_summary
    assert set(summary["by_kind"]) == set(KINDS)
    assert summary["num_pairs"] == len(pairs)
    for pair in pairs:
        assert pair.chosen != pair.rejected


def test_spans_mark_exactly_what_changed(pairs_and_summary):
    for pair in pairs_and_summary[0]:
        ((c0, c1),), ((r0, r1),) = pair.chosen_spans, pair.rejected_spans
        # Outside the spans both texts are the same characters.
        assert pair.chosen[:c0] == pair.rejected[:r0], pair
        assert pair.chosen[c1:] == pair.rejected[r1:], pair
        assert pair.chosen[c0:c1] != pair.rejected[r0:r1]


def test_descriptions_chosen_faithful_rejected_not(pairs_and_summary, world_dir):
    scenes = {scene.id: scene for scene in load_scenes(world_dir)}
    described = [p for p in pairs_and_summary[0] if p.source == "describe"]
    assert described
    for pair in described:
        scene = scenes[pair.image_id]
        assert score_description(pair.chosen, scene).precision == 1.0
        assert score_description(pair.rejected, scene).precision < 1.0, pair.detail


def test_corruption_kinds_change_what_they_say(pairs_and_summary):
    by_kind = {}
    for pair in pairs_and_summary[0]:
        by_kind.setdefault(pair.kind, pair)
    changed = {kind: p.rejected[slice(*p.rejected_spans[0])] for kind, p in by_kind.items()}
    assert changed["object"].startswith(" A ") and changed["object"].endswith(".")
    assert changed["count"].split()[1].startswith("object")
    assert changed["relation"].startswith(("at the", "on the"))
    assert by_kind["negative"].prompt.startswith(("Is there", "Is the"))


def test_negative_yes_ratio_follows_the_setting(world_dir):
    _, half = build_preference_pairs(world_dir, kinds=["negative"], yes_ratio=0.5)
    _, all_yes = build_preference_pairs(world_dir, kinds=["negative"], yes_ratio=1.0)
    _, all_no = build_preference_pairs(world_dir, kinds=["negative"], yes_ratio=0.0)
    assert 0.2 < half["negative_yes_ratio"] < 0.8
    assert all_yes["negative_yes_ratio"] == 1.0
    assert all_no["negative_yes_ratio"] == 0.0


def test_deterministic_per_seed(world_dir, tmp_path):
    first, second, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    write_preference_data(world_dir, first, seed=5)
    write_preference_data(world_dir, second, seed=5)
    write_preference_data(world_dir, other, seed=6)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    summary = json.loads((tmp_path / "a.jsonl.summary.json").read_text())
    assert summary["seed"] == 5


def test_loads_with_datasets_in_trl_format(world_dir, tmp_path):
    import datasets

    out = tmp_path / "pairs.jsonl"
    summary = write_preference_data(world_dir, out)
    dataset = datasets.load_dataset("json", data_files=str(out), split="train")
    assert len(dataset) == summary["num_pairs"]
    row = dataset[0]
    assert row["prompt"][0]["role"] == "user"
    assert row["prompt"][0]["content"][0]["type"] == "image"
    assert row["chosen"][0]["content"][0]["text"]
    assert row["rejected"][0]["role"] == "assistant"
    assert len(row["images"]) == 1 and row["images"][0].endswith(".png")
    assert {"kind", "chosen_spans", "rejected_spans", "image_id"} <= set(dataset.column_names)
    assert len(load_pairs(out)) == len(dataset)


def test_diff_spans():
    assert diff_spans("No, there is", "Yes, there is") == ((0, 2), (0, 3))
    assert diff_spans("a red b", "a blue b") == ((2, 5), (2, 6))


def test_bad_world_and_kinds(world_dir, tmp_path):
    with pytest.raises(DataError, match="not found"):
        build_preference_pairs(tmp_path / "missing")
    with pytest.raises(ConfigError, match="choose from"):
        build_preference_pairs(world_dir, kinds=["object", "colour"])
    with pytest.raises(ConfigError, match="yes_ratio"):
        build_preference_pairs(world_dir, yes_ratio=1.5)
    with pytest.raises(DataError, match="file not found"):
        build_preference_pairs(tmp_path)  # a directory, but no world in it


def _write_row(tmp_path, world_dir, **changes):
    out = tmp_path / "pairs.jsonl"
    write_preference_data(world_dir, out, kinds=["answer"])
    row = json.loads(out.read_text().splitlines()[0])
    for key, value in changes.items():
        if value is None:
            del row[key]
        else:
            row[key] = value
    out.write_text(json.dumps(row) + "\n")
    return out


def _text(text):
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"rejected": None}, DataError, "missing field"),
        ({"images": ["/nowhere/x.png"]}, ImageError, "does not exist"),
        ({"chosen": _text("yes"), "rejected": _text("yes")}, DataError, "same text"),
        ({"chosen": _text("  ")}, DataError, "empty"),
        ({"chosen_spans": [[0, 99]]}, DataError, "outside"),
    ],
)
def test_bad_preference_files(world_dir, tmp_path, changes, error, message):
    path = _write_row(tmp_path, world_dir, **changes)
    with pytest.raises(error, match=message):
        load_pairs(path)


def test_cli(world_dir, tmp_path, run_cli):
    out, lrv = tmp_path / "pairs.jsonl", tmp_path / "lrv.json"
    code, stdout, _ = run_cli(
        "align",
        "data",
        "--world",
        world_dir,
        "--out",
        out,
        "--kinds",
        "count,negative",
        "--instructions",
        lrv,
    )
    assert code == 0
    assert "pairs" in stdout and "negative_yes_ratio" in stdout
    assert {p.kind for p in load_pairs(out)} == {"count", "negative"}
    records = json.loads(lrv.read_text())
    assert records and records[0]["conversations"][0]["value"].startswith("<image>\n")
    code, _, err = run_cli("align", "data", "--world", tmp_path / "no", "--out", out)
    assert code == 2 and err.startswith("error:") and "Traceback" not in err
    code, _, err = run_cli("align", "data", "--world", world_dir, "--out", out, "--kinds", "x")
    assert code == 2 and "choose from" in err
