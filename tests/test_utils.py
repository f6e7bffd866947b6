import json
import os

import pytest

from ocelli.utils import atomic_dir, atomic_write_json, provenance


def test_atomic_write_json_replaces_whole_file(tmp_path):
    target = tmp_path / "out" / "results.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"b": "二"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"b": "二"}
    assert os.listdir(target.parent) == ["results.json"]


def test_atomic_dir_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "checkpoint"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "weights.safetensors").write_bytes(b"partial")
            raise RuntimeError("crash while saving")
    assert not target.exists()
    assert os.listdir(tmp_path) == []


def test_atomic_dir_replaces_an_existing_directory(tmp_path):
    target = tmp_path / "final"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("new")
    assert sorted(os.listdir(target)) == ["b"]
    assert sorted(os.listdir(tmp_path)) == ["final"]


def test_provenance_names_version_and_commit():
    info = provenance()
    assert info["ocelli_version"]
    assert "git_commit" in info and "machine" in info
