"""Writing a generated world to disk.

`generate_dataset` builds every file in a temporary directory and renames it into place,
so a dataset directory is always complete. Layout (all paths relative to the directory):

    images/<id>.png       one image per scene
    scenes.jsonl          the scene graph of each image
    questions.jsonl       single-turn evaluation items, one per (question, language)
    conversations.json    LLaVA-format multi-turn records, one per (image, language)
    captions.jsonl        short and detailed captions per (image, language)
    pretrain.json         LLaVA-format caption records for connector pretraining
    describe.json         LLaVA-format detailed-description records (dense alignment data)
    text_conversations.json  the conversations with the image replaced by its exact
                          description: text-only instruction data for the language model
    corpus.txt            plain text (captions, questions with answers) for LM pretraining
    meta.json             config, seed, split, counts and provenance
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocelli.errors import ConfigError, DataError
from ocelli.utils import atomic_dir, provenance
from ocelli.world import text
from ocelli.world.config import WorldConfig
from ocelli.world.questions import phrase_questions, sample_questions
from ocelli.world.render import png_bytes, render_scene
from ocelli.world.scenes import Scene, generate_scene, scene_id
from ocelli.world.splits import allowed_combos, check_split, image_rng, split_seed

FORMAT_NAME = "ocelli.world"
FORMAT_VERSION = 1
IMAGE_PLACEHOLDER = "<image>\n"


@dataclass
class ImageRecords:
    """Everything written for one image."""

    scene: Scene
    png: bytes
    questions: list[dict[str, Any]] = field(default_factory=list)
    captions: list[dict[str, Any]] = field(default_factory=list)
    conversations: list[dict[str, Any]] = field(default_factory=list)
    pretrain: list[dict[str, Any]] = field(default_factory=list)
    describe: list[dict[str, Any]] = field(default_factory=list)
    text_conversations: list[dict[str, Any]] = field(default_factory=list)


def generate_dataset(
    out_dir: str | Path,
    num_images: int,
    seed: int,
    split: str = "train",
    config: WorldConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate `num_images` images of `split` with their questions and captions into
    `out_dir` (replaced if it holds an earlier world dataset). Returns the meta.json dict."""
    if not isinstance(num_images, int) or isinstance(num_images, bool) or num_images <= 0:
        raise ConfigError(f"num_images must be a positive integer, got {num_images!r}")
    config = (config or WorldConfig()).resolve()
    check_split(split)
    allowed_combos(config)  # fails early when a CoGenT condition leaves a shape colourless
    allow_heldout = (
        config.use_heldout_templates
        if config.use_heldout_templates is not None
        else split != "train"
    )
    out_dir = Path(out_dir)
    _check_output_dir(out_dir)
    sub_seed = split_seed(seed, split)
    records: list[ImageRecords] = []
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        for index in _progress(range(num_images), f"world {split}", num_images, progress):
            item = build_image(index, sub_seed, split, config, allow_heldout)
            (tmp / item.scene.image).write_bytes(item.png)
            item.png = b""  # already on disk; keep memory flat for large datasets
            records.append(item)
        meta = _meta(records, config, seed, split, sub_seed, allow_heldout)
        _write_files(tmp, records, meta)
    return meta


def build_image(
    index: int, sub_seed: int, split: str, config: WorldConfig, allow_heldout: bool
) -> ImageRecords:
    """Scene, pixels and every text record of image `index` of a split."""
    image_id = scene_id(split, index)
    scene = generate_scene(image_rng(sub_seed, index, "scene"), config, image_id)
    scene.image = f"images/{image_id}.png"
    item = ImageRecords(scene, png_bytes(render_scene(scene, config.supersample)))
    specs = sample_questions(scene, config, image_rng(sub_seed, index, "questions"))
    for lang in config.langs:
        rng = image_rng(sub_seed, index, lang)
        questions = phrase_questions(specs, lang, rng, allow_heldout)
        base = {"image_id": image_id, "image": scene.image, "lang": lang}
        for number, question in enumerate(questions):
            item.questions.append({"id": f"{image_id}_{lang}_q{number}", **base, **question})
        short = text.short_caption(scene, lang, rng)
        detailed = text.detailed_caption(scene, lang)
        item.captions.append(
            {"id": f"{image_id}_{lang}", **base, "short": short, "detailed": detailed}
        )
        turns = [(q["question"], q["answer"]) for q in questions]
        if config.caption_turn:
            # Last, not first: a description before the questions would let the model copy
            # answers from it instead of reading the image, and evaluation asks each
            # question as the first turn.
            turns.append((text.caption_prompt(lang, rng, detailed=True), detailed))
        item.conversations.append(_llava_record(f"{image_id}_{lang}", scene.image, lang, turns))
        item.text_conversations.append(
            _llava_record(f"{image_id}_{lang}", None, lang, turns, context=detailed)
        )
        item.describe.append(
            _llava_record(
                f"{image_id}_{lang}",
                scene.image,
                lang,
                [(text.caption_prompt(lang, rng, detailed=True), detailed)],
            )
        )
        prompt = text.caption_prompt(lang, rng, detailed=False)
        item.pretrain.append(
            _llava_record(f"{image_id}_{lang}", scene.image, lang, [(prompt, short)])
        )
    return item


def _llava_record(
    record_id: str,
    image: str | None,
    lang: str,
    turns: list[tuple[str, str]],
    context: str | None = None,
) -> dict[str, Any]:
    """One LLaVA record; with `context` (and no image) the first turn opens with that
    text where the image placeholder would be."""
    opening = IMAGE_PLACEHOLDER if image is not None else f"{context}\n"
    conversation = []
    for number, (question, answer) in enumerate(turns):
        prefix = opening if number == 0 else ""
        conversation.append({"from": "human", "value": prefix + question})
        conversation.append({"from": "gpt", "value": answer})
    record = {"id": record_id, "lang": lang, "conversations": conversation}
    if image is not None:
        record = {"id": record_id, "image": image, **record}
    return record


def _check_output_dir(out_dir: Path) -> None:
    """Refuse to replace a directory that is not an earlier world dataset."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise DataError(f"{out_dir} exists and is not a directory; choose another output path")
    if not any(out_dir.iterdir()):
        return
    try:
        meta = json.loads((out_dir / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DataError(
            f"{out_dir} exists and is not an ocelli world dataset; it would be replaced. "
            "Choose a new directory or remove it first"
        )


def _progress(items: Iterable[int], description: str, total: int, enabled: bool) -> Iterator[int]:
    if not enabled:
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def _meta(
    records: list[ImageRecords],
    config: WorldConfig,
    seed: int,
    split: str,
    sub_seed: int,
    allow_heldout: bool,
) -> dict[str, Any]:
    by_type: dict[str, Counter] = {}
    for item in records:
        for question in item.questions:
            by_type.setdefault(question["lang"], Counter())[question["type"]] += 1
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "seed": seed,
        "split": split,
        "split_seed": sub_seed,
        "num_images": len(records),
        "heldout_templates_used": allow_heldout,
        "config": config.to_dict(),
        "counts": {
            "images": len(records),
            "questions": sum(len(r.questions) for r in records),
            "questions_by_lang_and_type": {
                lang: dict(sorted(counts.items())) for lang, counts in sorted(by_type.items())
            },
            "conversations": sum(len(r.conversations) for r in records),
            "captions": sum(len(r.captions) for r in records),
        },
        "provenance": provenance(),
    }


def _write_files(root: Path, records: list[ImageRecords], meta: dict[str, Any]) -> None:
    # Files are written in place: `root` is the temporary directory of atomic_dir.
    _write_jsonl(root / "scenes.jsonl", (r.scene.to_dict() for r in records))
    _write_jsonl(root / "questions.jsonl", (q for r in records for q in r.questions))
    _write_jsonl(root / "captions.jsonl", (c for r in records for c in r.captions))
    _write_json(root / "conversations.json", [c for r in records for c in r.conversations])
    _write_json(root / "pretrain.json", [p for r in records for p in r.pretrain])
    _write_json(root / "describe.json", [p for r in records for p in r.describe])
    _write_json(
        root / "text_conversations.json", [p for r in records for p in r.text_conversations]
    )
    (root / "corpus.txt").write_text("".join(_corpus_lines(records)), encoding="utf-8")
    _write_json(root / "meta.json", meta, indent=2)


def _corpus_lines(records: list[ImageRecords]) -> Iterator[str]:
    for item in records:
        for caption in item.captions:
            yield caption["short"] + "\n"
            yield caption["detailed"] + "\n"
        for question in item.questions:
            yield f"{question['question']} {question['answer']}\n"


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_json(path: Path, value: Any, indent: int | None = None) -> None:
    # Large files unindented: json's C encoder only runs without indentation.
    path.write_text(json.dumps(value, ensure_ascii=False, indent=indent) + "\n", encoding="utf-8")
