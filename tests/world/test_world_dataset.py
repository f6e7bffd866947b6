"""Dataset files: determinism, splits, formats, loaders, errors and the contact sheet."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ocelli.errors import ConfigError, DataError
from ocelli.world import (
    WorldConfig,
    as_hf_dataset,
    generate_dataset,
    load_conversations,
    load_meta,
    load_questions,
    load_scenes,
    write_contact_sheet,
)

SMALL = WorldConfig(max_objects=3, langs=["en", "zh"], questions_per_image=4)
TEXT_FILES = (
    "scenes.jsonl",
    "questions.jsonl",
    "captions.jsonl",
    "conversations.json",
    "pretrain.json",
    "corpus.txt",
)


def _digests(root: Path) -> dict[str, str]:
    files = [root / name for name in TEXT_FILES] + sorted((root / "images").glob("*.png"))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_same_seed_gives_identical_bytes(tmp_path):
    generate_dataset(tmp_path / "a", 5, seed=1, config=SMALL, progress=False)
    generate_dataset(tmp_path / "b", 5, seed=1, config=SMALL, progress=False)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")


def test_splits_never_share_images(tmp_path):
    hashes = {}
    for split in ("train", "val", "test"):
        generate_dataset(tmp_path / split, 6, seed=1, split=split, config=SMALL, progress=False)
        pngs = {k: v for k, v in _digests(tmp_path / split).items() if k.endswith(".png")}
        hashes[split] = set(pngs.values())
        assert all(name.startswith(f"{split}_") for name in pngs)
    assert not hashes["train"] & hashes["val"]
    assert not hashes["train"] & hashes["test"]
    assert not hashes["val"] & hashes["test"]


def test_files_and_meta(world_dir):
    for name in (*TEXT_FILES, "meta.json"):
        assert (world_dir / name).is_file(), name
    meta = load_meta(world_dir)
    assert meta["format"] == "ocelli.world" and meta["split"] == "train" and meta["seed"] == 7
    assert meta["config"]["image_size"] == 80 and meta["config"]["langs"] == ["en", "zh"]
    assert {"git_commit", "created"} <= set(meta["provenance"])
    questions = load_questions(world_dir)
    assert meta["counts"]["questions"] == len(questions)
    by_type = meta["counts"]["questions_by_lang_and_type"]
    assert sum(sum(t.values()) for t in by_type.values()) == len(questions)
    assert not any(q["heldout"] for q in questions)  # train split: no held-out phrasings
    scenes = load_scenes(world_dir)
    assert len(scenes) == 24 and all((world_dir / s.image).is_file() for s in scenes)
    assert {q["image_id"] for q in questions} == {s.id for s in scenes}


def test_llava_conversations(world_dir):
    for name in ("conversations.json", "pretrain.json"):
        records = load_conversations(world_dir, name)
        assert len(records) == 24 * 2  # one per image and language
        for record in records:
            turns = record["conversations"]
            assert turns[0]["from"] == "human" and turns[0]["value"].startswith("<image>\n")
            assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
            assert sum(t["value"].count("<image>") for t in turns) == 1
            assert record["lang"] in ("en", "zh") and (world_dir / record["image"]).is_file()
    conversation = load_conversations(world_dir)[0]
    questions = [
        q
        for q in load_questions(world_dir)
        if q["image"] == conversation["image"] and q["lang"] == conversation["lang"]
    ]
    assert len(conversation["conversations"]) == 2 * (len(questions) + 1)  # + caption turn


def test_corpus_and_captions_in_both_languages(world_dir):
    corpus = (world_dir / "corpus.txt").read_text(encoding="utf-8").splitlines()
    assert any("图中有" in line for line in corpus)
    assert any(line.startswith("The image shows") for line in corpus)
    captions = [json.loads(line) for line in (world_dir / "captions.jsonl").open(encoding="utf-8")]
    assert {c["lang"] for c in captions} == {"en", "zh"}
    assert all(c["short"] and c["detailed"] for c in captions)


def test_hugging_face_datasets(world_dir):
    questions = as_hf_dataset(world_dir, "questions")
    assert len(questions) == len(load_questions(world_dir))
    assert Path(questions[0]["image_path"]).is_file()
    conversations = as_hf_dataset(world_dir, "conversations")
    assert conversations[0]["conversations"][0]["from"] == "human"
    with pytest.raises(DataError, match="unknown dataset kind"):
        as_hf_dataset(world_dir, "pictures")


def test_contact_sheets(world_dir, tmp_path):
    page = write_contact_sheet(world_dir, tmp_path / "sheet.html", num_images=4)
    html = page.read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 4 and "train_000003" in html
    grid = write_contact_sheet(world_dir, tmp_path / "sheet.png", num_images=5)
    assert grid.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("num_images", [0, -3])
def test_num_images_must_be_positive(tmp_path, num_images):
    with pytest.raises(ConfigError, match="num_images"):
        generate_dataset(tmp_path / "x", num_images, seed=0, progress=False)


def test_refuses_to_replace_other_directories(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(DataError, match="not an ocelli world dataset"):
        generate_dataset(tmp_path, 1, seed=0, progress=False)
    assert (tmp_path / "keep.txt").read_text() == "precious"


def _copy(world_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("scenes.jsonl", "questions.jsonl", "conversations.json"):
        (copy / name).write_bytes((world_dir / name).read_bytes())
    return copy


def test_corrupt_files_name_file_and_line(world_dir, tmp_path):
    copy = _copy(world_dir, tmp_path)
    lines = (copy / "scenes.jsonl").read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1][:-5]
    (copy / "scenes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"scenes\.jsonl:2: not valid JSON"):
        load_scenes(copy)
    lines[1] = json.dumps({"id": "x", "width": 64})
    (copy / "scenes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"scenes\.jsonl:2: missing key"):
        load_scenes(copy)
    (copy / "questions.jsonl").write_text('{"id": "q"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"questions\.jsonl:1: missing key"):
        load_questions(copy)
    (copy / "conversations.json").write_text(
        '[{"id": 1, "image": "a.png", "conversations": [{"from": "gpt", "value": "hi"}]}]'
    )
    with pytest.raises(DataError, match="conversations.json record 0"):
        load_conversations(copy)


def test_missing_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match=r"scenes\.jsonl: file not found"):
        load_scenes(tmp_path)
    with pytest.raises(DataError, match=r"questions\.jsonl: file not found"):
        load_questions(tmp_path)
