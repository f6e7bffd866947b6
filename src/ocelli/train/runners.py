"""Runs a recipe's stages in order; each stage reads the previous stage's output dir."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ocelli.errors import ConfigError
from ocelli.train.recipe import STAGES, Recipe, StageSection
from ocelli.train.stages import RunPaths, param_groups, require, write_stage_config
from ocelli.utils import atomic_write_json, seed_everything

WORLD_SPLITS = {"train": "A", "val": "A", "test": "A", "cogent-b": "B"}


def prepare_world(recipe: Recipe, paths: RunPaths, progress: bool = True) -> dict[str, Path]:
    """Generate the world splits the recipe needs (skipped when already there).

    The model trains on CoGenT condition A; `test` is in distribution (A), `cogent-b`
    holds the colour-shape combinations never seen in training.
    """
    from ocelli.world import generate_dataset, world_preset

    sizes = {"train": recipe.world.train_images, "val": recipe.world.val_images,
             "test": recipe.world.test_images, "cogent-b": recipe.world.cogent_images}
    out = {}
    for split, condition in WORLD_SPLITS.items():
        target = paths.world(split)
        out[split] = target
        if (target / "meta.json").is_file() or sizes[split] <= 0:
            continue
        config = world_preset(recipe.world.preset, langs=recipe.world.langs,
                              cogent=condition, **recipe.world.overrides)
        generate_dataset(target, sizes[split], seed=recipe.seed,
                         split=split,
                         config=config, progress=progress)
    return out


def build_tokenizer(recipe: Recipe, paths: RunPaths) -> Any:
    from ocelli.data import load_tokenizer, train_tokenizer

    if recipe.model.tokenizer:
        return load_tokenizer(recipe.model.tokenizer)
    if (paths.tokenizer / "tokenizer.json").is_file():
        return load_tokenizer(paths.tokenizer)
    corpus = require(paths.world("train") / "corpus.txt", "tokenizer", "the world's text corpus")
    lines = corpus.read_text(encoding="utf-8").splitlines()
    tokenizer = train_tokenizer(lines, vocab_size=recipe.model.vocab_size)
    tokenizer.save_pretrained(paths.tokenizer)
    return tokenizer


def _train_config(section: StageSection, max_steps: int | None, seed: int) -> Any:
    config = section.train
    if max_steps is not None:
        config = replace(config, max_steps=min(config.max_steps, max_steps))
    return replace(config, seed=seed)


def run_vision_stage(recipe: Recipe, paths: RunPaths, tokenizer: Any, resume: bool,
                     max_steps: int | None) -> dict[str, Any]:
    from ocelli.model import build_vision_encoder
    from ocelli.train import train
    from ocelli.train.pretrain_vision import SceneCaptionDataset, SceneTargets, VisionPretrainModel
    from ocelli.world import COLORS, SHAPES, SIZES

    stage_dir = paths.stage("vision")
    encoder = build_vision_encoder(recipe.model.vision, **recipe.model.vision_overrides,
                                   feature_layer=recipe.model.vision_feature_layer,
                                   keep_cls=False)
    targets = SceneTargets(SHAPES, COLORS, SIZES)
    dataset = SceneCaptionDataset(paths.world("train"), encoder.image_processor(), tokenizer,
                                  targets, grid=encoder.grid_size,
                                  caption_field=recipe.vision_objective.caption_field)
    model = VisionPretrainModel(encoder, len(tokenizer), targets.num_classes, recipe.vision_objective)
    result = train(model, dataset, dataset.collate,
                   _train_config(recipe.vision, max_steps, recipe.seed), stage_dir,
                   resume=resume, description="stage 0: vision encoder")
    encoder.save_pretrained(paths.vision_encoder)
    write_stage_config(recipe, stage_dir)
    return result.summary()


def run_text_stage(recipe: Recipe, paths: RunPaths, tokenizer: Any, resume: bool,
                   max_steps: int | None) -> dict[str, Any]:
    from ocelli.model import build_language_model
    from ocelli.train import train
    from ocelli.train.pretrain_text import PackedTextDataset, collate_blocks

    stage_dir = paths.stage("text")
    model = build_language_model(recipe.model.language_model, vocab_size=len(tokenizer),
                                 **recipe.model.language_model_overrides)
    dataset = PackedTextDataset(paths.world("train") / "corpus.txt", tokenizer, block_size=128)
    result = train(model, dataset, collate_blocks, _train_config(recipe.text, max_steps, recipe.seed),
                   stage_dir, resume=resume, description="stage 0: language model",
                   count_tokens=lambda batch: batch["input_ids"].numel())
    tokenizer.save_pretrained(paths.model("text"))
    write_stage_config(recipe, stage_dir)
    return result.summary()


def _multimodal_stage(recipe: Recipe, paths: RunPaths, stage: str, model: Any, processor: Any,
                      data_file: str, resume: bool, max_steps: int | None) -> dict[str, Any]:
    from ocelli.data import ConversationDataset, PadCollator, count_tokens, load_conversations
    from ocelli.train import train

    section: StageSection = getattr(recipe, stage)
    stage_dir = paths.stage(stage)
    records = load_conversations(paths.world("train") / data_file)
    dataset = ConversationDataset(records, processor)
    groups = param_groups(model, section, stage)
    result = train(model, dataset, PadCollator(processor.tokenizer.pad_token_id),
                   _train_config(section, max_steps, recipe.seed), stage_dir,
                   param_groups=groups, resume=resume, count_tokens=count_tokens,
                   description=f"stage {'1: alignment' if stage == 'align' else '2: instruction tuning'}")
    processor.save_pretrained(paths.model(stage))
    write_stage_config(recipe, stage_dir)
    return result.summary()


def run_align_stage(recipe: Recipe, paths: RunPaths, tokenizer: Any, resume: bool,
                    max_steps: int | None) -> dict[str, Any]:
    from ocelli.data import OcelliProcessor
    from ocelli.model import OcelliForConditionalGeneration

    vision = recipe.model.vision
    if recipe.vision.enabled:
        vision = str(require(paths.vision_encoder, "align", "the stage 0 vision encoder"))
    language_model = recipe.model.language_model
    if recipe.text.enabled:
        language_model = str(require(paths.model("text"), "align", "the stage 0 language model"))
    model = OcelliForConditionalGeneration.from_components(
        vision=vision, language_model=language_model, connector=recipe.model.connector,
        connector_config=recipe.model.connector_config,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        vision_feature_layer=recipe.model.vision_feature_layer, keep_cls=recipe.model.keep_cls,
    )
    processor = OcelliProcessor.for_model(model, tokenizer, max_length=recipe.model.max_length)
    return _multimodal_stage(recipe, paths, "align", model, processor, "pretrain.json",
                             resume, max_steps)


def run_instruct_stage(recipe: Recipe, paths: RunPaths, tokenizer: Any, resume: bool,
                       max_steps: int | None) -> dict[str, Any]:
    from ocelli.data import OcelliProcessor
    from ocelli.model import OcelliForConditionalGeneration, apply_lora

    start = require(paths.model("align"), "instruct", "the stage 1 (align) model")
    model = OcelliForConditionalGeneration.from_pretrained(start)
    processor = OcelliProcessor.from_pretrained(start)
    if recipe.instruct.lora:
        model = apply_lora(model, **recipe.instruct.lora)
    return _multimodal_stage(recipe, paths, "instruct", model, processor, "conversations.json",
                             resume, max_steps)


RUNNERS = {"vision": run_vision_stage, "text": run_text_stage, "align": run_align_stage,
           "instruct": run_instruct_stage}


def run_recipe(recipe: Recipe, out_dir: str | Path, stages: list[str] | None = None,
               resume: bool = False, max_steps: int | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Run the recipe's enabled stages (or only `stages`); returns per-stage summaries."""
    unknown = set(stages or []) - set(STAGES)
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(sorted(unknown))}; stages: {', '.join(STAGES)}")
    paths = RunPaths(out_dir)
    seed_everything(recipe.seed)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    prepare_world(recipe, paths, progress=progress)
    tokenizer = build_tokenizer(recipe, paths)
    timings["world+tokenizer"] = time.perf_counter() - start
    summaries = {}
    for name in STAGES:
        if stages is not None and name not in stages:
            continue
        if stages is None and not getattr(recipe, name).enabled:
            continue
        seed_everything(recipe.seed)
        began = time.perf_counter()
        summaries[name] = RUNNERS[name](recipe, paths, tokenizer, resume, max_steps)
        timings[name] = time.perf_counter() - began
    atomic_write_json(paths.root / "train_summary.json", {"stages": summaries, "timings": timings})
    return {"stages": summaries, "timings": timings, "paths": paths}
