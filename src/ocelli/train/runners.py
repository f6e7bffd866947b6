"""Runs a recipe's stages in order; each stage reads the previous stage's output dir."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ocelli.errors import ConfigError
from ocelli.train.recipe import STAGES, DPOSection, Recipe, StageSection
from ocelli.train.stages import RunPaths, param_groups, require, write_stage_config
from ocelli.utils import atomic_write_json, seed_everything

WORLD_SPLITS = {"train": "A", "val": "A", "test": "A", "cogent-b": "B"}


def prepare_world(recipe: Recipe, paths: RunPaths, progress: bool = True) -> dict[str, Path]:
    """Generate the world splits the recipe needs (skipped when already there).

    The model trains on CoGenT condition A; `test` is in distribution (A), `cogent-b`
    holds the colour-shape combinations never seen in training.
    """
    from ocelli.world import generate_dataset, world_preset

    sizes = {
        "train": recipe.world.train_images,
        "val": recipe.world.val_images,
        "test": recipe.world.test_images,
        "cogent-b": recipe.world.cogent_images if recipe.world.cogent else 0,
    }
    out = {}
    for split, condition in WORLD_SPLITS.items():
        condition = condition if recipe.world.cogent else None
        target = paths.world(split)
        out[split] = target
        if (target / "meta.json").is_file() or sizes[split] <= 0:
            continue
        config = world_preset(
            recipe.world.preset,
            langs=recipe.world.langs,
            cogent=condition,
            **recipe.world.overrides,
        )
        generate_dataset(
            target, sizes[split], seed=recipe.seed, split=split, config=config, progress=progress
        )
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


def _train_config(section: StageSection | DPOSection, max_steps: int | None, seed: int) -> Any:
    config = section.train
    if max_steps is not None:
        config = replace(
            config, max_steps=min(config.max_steps or max_steps, max_steps), epochs=None
        )
    return replace(config, seed=seed)


def _vision_encoder(recipe: Recipe) -> Any:
    """The encoder stage 0 starts from: a preset (random weights) or a local checkpoint."""
    from ocelli.model import build_vision_encoder, load_vision_encoder, vision_preset

    spec, layer = recipe.model.vision, recipe.model.vision_feature_layer
    if Path(spec).is_dir():
        return load_vision_encoder(spec, feature_layer=layer, keep_cls=False)
    config = vision_preset(spec, **recipe.model.vision_overrides)
    return build_vision_encoder(config, feature_layer=layer, keep_cls=False)


def run_vision_stage(
    recipe: Recipe, paths: RunPaths, tokenizer: Any, resume: bool, max_steps: int | None
) -> dict[str, Any]:
    from ocelli.train import train
    from ocelli.train.pretrain_vision import SceneCaptionDataset, SceneTargets, VisionPretrainModel
    from ocelli.utils import atomic_dir
    from ocelli.world import COLORS, SHAPES, SIZES

    stage_dir = paths.stage("vision")
    encoder = _vision_encoder(recipe)
    grid = math.isqrt(encoder.num_tokens)
    if grid * grid != encoder.num_tokens:
        raise ConfigError(f"stage 0 needs a square grid of image tokens, got {encoder.num_tokens}")
    targets = SceneTargets(list(SHAPES), list(COLORS), list(SIZES))
    dataset = SceneCaptionDataset(
        paths.world("train"),
        encoder.image_processor(),
        tokenizer,
        targets,
        grid=grid,
        caption_field=recipe.vision_objective.caption_field,
    )
    model = VisionPretrainModel(
        encoder, len(tokenizer), targets.num_classes, recipe.vision_objective
    )
    result = train(
        model,
        dataset,
        dataset.collate,
        # HF vision models end in a pooling head that features read from the hidden states
        # never use: DDP must be told those parameters get no gradient.
        replace(
            _train_config(recipe.vision, max_steps, recipe.seed), ddp_find_unused_parameters=True
        ),
        stage_dir,
        resume=resume,
        description="stage 0: vision encoder",
    )
    if _is_main_process():
        with atomic_dir(paths.vision_encoder) as tmp:
            encoder.model.save_pretrained(tmp)
        write_stage_config(recipe, stage_dir)
    _wait_for_everyone()
    summary = result.summary()
    held_out = paths.world("val") if (paths.world("val") / "scenes.jsonl").is_file() else None
    if held_out is not None:
        val = SceneCaptionDataset(
            held_out, encoder.image_processor(), tokenizer, targets, grid=grid
        )
        batch = val.collate([val[i] for i in range(len(val))])
        model.eval()
        summary["dense_accuracy_val"] = model.dense_accuracy(
            batch["pixel_values"].to(next(model.parameters()).device),
            **{k: batch[k].to(next(model.parameters()).device) for k in targets.num_classes},
        )
    return summary


def run_text_stage(
    recipe: Recipe, paths: RunPaths, tokenizer: Any, resume: bool, max_steps: int | None
) -> dict[str, Any]:
    """The LM learns the chat format and to answer from a scene description in context
    (`text_conversations.json`), or plain LM pretraining on a text file (`corpus.txt`)."""
    from ocelli.data import (
        ConversationDataset,
        ImageProcessor,
        OcelliProcessor,
        PadCollator,
        count_tokens,
        load_conversations,
    )
    from ocelli.model import build_language_model
    from ocelli.train import train
    from ocelli.train.pretrain_text import PackedTextDataset, collate_blocks

    stage_dir = paths.stage("text")
    model = build_language_model(
        recipe.model.language_model, len(tokenizer), **recipe.model.language_model_overrides
    )
    data_file = paths.world("train") / (recipe.text.data or "text_conversations.json")
    if data_file.suffix == ".txt":
        dataset, collate = PackedTextDataset(data_file, tokenizer, block_size=128), collate_blocks
    else:
        processor = OcelliProcessor(
            tokenizer, ImageProcessor(), num_image_tokens=1, max_length=recipe.model.max_length
        )
        dataset = ConversationDataset(load_conversations(data_file), processor)
        collate = PadCollator(tokenizer.pad_token_id)
    result = train(
        model,
        dataset,
        collate,
        _train_config(recipe.text, max_steps, recipe.seed),
        stage_dir,
        resume=resume,
        description="stage 0: language model",
        count_tokens=count_tokens
        if data_file.suffix != ".txt"
        else (lambda batch: batch["input_ids"].numel()),
        save_with_model=tokenizer.save_pretrained,  # each step's model/ loads with Auto*
    )
    if _is_main_process():
        tokenizer.save_pretrained(paths.model("text"))
        write_stage_config(recipe, stage_dir)
    _wait_for_everyone()
    return result.summary()


STAGE_TITLES = {
    "align": "stage 1: alignment",
    "perceive": "stage 1b: perception warm-up",
    "instruct": "stage 2: instruction tuning",
}


def _multimodal_stage(
    recipe: Recipe,
    paths: RunPaths,
    stage: str,
    model: Any,
    processor: Any,
    data_file: str | Path,
    resume: bool,
    max_steps: int | None,
    adapter_parts: tuple[str, ...] = (),
    calibrate: bool = False,
    image_root: Path | None = None,
) -> dict[str, Any]:
    """Train `model` on a world conversation file; `calibrate` (a new connector) first
    measures the statistics its input standardisation uses on the training images."""
    from ocelli.data import ConversationDataset, PadCollator, count_tokens, load_conversations
    from ocelli.train import train
    from ocelli.train.features import calibrate_connector, precompute_vision_features
    from ocelli.train.plots import plot_val_accuracy
    from ocelli.train.validation import stage_evaluation

    section: StageSection = getattr(recipe, stage)
    stage_dir = paths.stage(stage)
    records = load_conversations(paths.world("train") / data_file, image_root)
    dataset = ConversationDataset(records, processor)
    groups = param_groups(model, section, stage, adapter_parts)
    has_tower = getattr(model, "vision_tower", None) is not None
    if "vision" not in groups and has_tower:
        dataset.vision_features = precompute_vision_features(
            model, processor, dataset.image_paths()
        )
    if calibrate:  # on encoder features, or on the pixels of an encoder-free connector
        calibrate_connector(model, processor, dataset.image_paths(), dataset.vision_features)
    result = train(
        model,
        dataset,
        PadCollator(processor.tokenizer.pad_token_id),
        _train_config(section, max_steps, recipe.seed),
        stage_dir,
        param_groups=groups,
        resume=resume,
        count_tokens=count_tokens,
        description=STAGE_TITLES[stage],
        evaluation=stage_evaluation(recipe, paths, stage, model, processor, data_file),
        save_with_model=processor.save_pretrained,  # each step's model/ loads on its own
    )
    if _is_main_process():
        processor.save_pretrained(paths.model(stage))
        write_stage_config(recipe, stage_dir)
        plot_val_accuracy(stage_dir)
    _wait_for_everyone()
    return result.summary()


def needs_vision_encoder(recipe: Recipe) -> bool:
    """False for encoder-free connectors (raw patches into the LM): no stage 0 vision."""
    from ocelli.model import CONNECTORS  # importing the package registers the built-ins

    return CONNECTORS.get(recipe.model.connector).requires_vision_encoder


def _fresh_model(recipe: Recipe, paths: RunPaths, tokenizer: Any) -> tuple[Any, Any]:
    """Encoder + new connector + LM, the parts taken from stage 0 when it ran."""
    from ocelli.data import OcelliProcessor
    from ocelli.model import OcelliForConditionalGeneration

    vision, vision_overrides = recipe.model.vision, recipe.model.vision_overrides
    if not needs_vision_encoder(recipe):
        vision, vision_overrides = None, None
    elif recipe.vision.enabled:
        vision = str(require(paths.vision_encoder, "align", "the stage 0 vision encoder"))
        vision_overrides = None
    language_model, lm_overrides = (
        recipe.model.language_model,
        recipe.model.language_model_overrides,
    )
    if recipe.text.enabled:
        language_model = str(require(paths.model("text"), "align", "the stage 0 language model"))
        lm_overrides = None
    model = OcelliForConditionalGeneration.from_components(
        vision=vision,
        language_model=language_model,
        connector=recipe.model.connector,
        connector_config=recipe.model.connector_config,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        vision_overrides=vision_overrides,
        language_model_overrides=lm_overrides,
        vision_feature_layer=recipe.model.vision_feature_layer,
        keep_cls=recipe.model.keep_cls,
        anyres=recipe.model.anyres,
    )
    return model, OcelliProcessor.for_model(model, tokenizer, max_length=recipe.model.max_length)


def run_align_stage(
    recipe: Recipe, paths: RunPaths, tokenizer: Any, resume: bool, max_steps: int | None
) -> dict[str, Any]:
    model, processor = _fresh_model(recipe, paths, tokenizer)
    return _multimodal_stage(
        recipe,
        paths,
        "align",
        model,
        processor,
        recipe.align.data or "describe.json",
        resume,
        max_steps,
        calibrate=True,
    )


def run_perceive_stage(
    recipe: Recipe, paths: RunPaths, tokenizer: Any, resume: bool, max_steps: int | None
) -> dict[str, Any]:
    from ocelli.train.perceive import write_perception_data

    section = recipe.perceive
    if section.lora:
        raise ConfigError(
            "perceive.lora is not supported: stage 1b trains the connector and LM in full; "
            "remove perceive.lora (stage 2 may still use instruct.lora)"
        )
    built = not section.data  # from the world's questions, into RUN/perceive/data.json
    world_train = paths.world("train")
    if built and not (world_train / "questions.jsonl").is_file():
        raise ConfigError(
            f"stage perceive builds its questions from {world_train / 'questions.jsonl'}, "
            "which does not exist (a run without a world); give perceive.data=<a LLaVA file of "
            "single questions> or set perceive.enabled=false"
        )
    model, processor, fresh_connector = _stage_start(recipe, paths, tokenizer, "perceive")
    data, image_root = Path(section.data), None
    if built:
        # absolute, so that it does not resolve under the world like a file named by the recipe
        data, image_root = (paths.stage("perceive") / "data.json").resolve(), world_train
        if _is_main_process():
            langs = section.langs or recipe.world.langs
            write_perception_data(world_train, data, section.question_types, langs, recipe.seed)
        _wait_for_everyone()
    return _multimodal_stage(
        recipe,
        paths,
        "perceive",
        model,
        processor,
        data,
        resume,
        max_steps,
        calibrate=fresh_connector,
        image_root=image_root,
    )


def run_instruct_stage(
    recipe: Recipe, paths: RunPaths, tokenizer: Any, resume: bool, max_steps: int | None
) -> dict[str, Any]:
    from ocelli.model import apply_lora

    model, processor, fresh_connector = _stage_start(recipe, paths, tokenizer, "instruct")
    if recipe.instruct.lora:
        model = apply_lora(model, **recipe.instruct.lora)
    summary = _multimodal_stage(
        recipe,
        paths,
        "instruct",
        model,
        processor,
        recipe.instruct.data or "conversations.json",
        resume,
        max_steps,
        adapter_parts=("language_model",) if recipe.instruct.lora else (),
        calibrate=fresh_connector,
    )
    if recipe.instruct.lora and _is_main_process():
        _save_merged(model, processor, paths)
    _wait_for_everyone()
    return summary


def _stage_start(
    recipe: Recipe, paths: RunPaths, tokenizer: Any, stage: str
) -> tuple[Any, Any, bool]:
    """(model, processor, whether its connector is new) for stage 1b or 2: the latest
    enabled earlier multimodal stage's model (perceive, then align), else a fresh one."""
    from ocelli.data import OcelliProcessor
    from ocelli.model import OcelliForConditionalGeneration

    earlier = {"perceive": ("align",), "instruct": ("perceive", "align")}[stage]
    for name in earlier:
        if getattr(recipe, name).enabled:
            start = require(paths.model(name), stage, f"the {name} stage's model")
            model = OcelliForConditionalGeneration.from_pretrained(start)
            return model, OcelliProcessor.from_pretrained(start), False
    model, processor = _fresh_model(recipe, paths, tokenizer)
    return model, processor, True


def stage_preference_pairs(recipe: Recipe, paths: RunPaths) -> tuple[Path, dict[str, Any]]:
    """The stage 3 pairs from the training world (a seeded sample of `dpo.num_pairs`),
    written to RUN/dpo/pairs.jsonl; the same recipe always gives the same file."""
    import numpy as np

    from ocelli.align import build_preference_pairs, write_pairs
    from ocelli.align.preference_data import summarize

    section = recipe.dpo
    out = paths.stage("dpo") / "pairs.jsonl"
    pairs, _ = build_preference_pairs(
        paths.world("train"), section.kinds, recipe.seed, section.yes_ratio
    )
    if section.num_pairs is not None and section.num_pairs < len(pairs):
        order = np.random.default_rng(recipe.seed).permutation(len(pairs))
        pairs = [pairs[i] for i in sorted(order[: section.num_pairs])]
    if not pairs:
        raise ConfigError("dpo: no preference pairs; check dpo.kinds and dpo.num_pairs")
    if _is_main_process():
        out.parent.mkdir(parents=True, exist_ok=True)
        write_pairs(out, pairs)
    _wait_for_everyone()
    return out, summarize(pairs)


def run_dpo_stage(
    recipe: Recipe, paths: RunPaths, tokenizer: Any, resume: bool, max_steps: int | None
) -> dict[str, Any]:
    """Stage 3: DPO/IPO from the stage 2 model, the reference a frozen copy of it."""
    from ocelli.align import DPOConfig, train_dpo

    start = require(paths.model("instruct"), "dpo", "the stage 2 (instruct) model")
    section = recipe.dpo
    if section.data:
        data, pair_summary = Path(section.data), {"data": section.data}
    else:
        data, pair_summary = stage_preference_pairs(recipe, paths)
    config = DPOConfig(
        beta=section.beta,
        loss=section.loss,
        segment_weight=section.segment_weight,
        sft_weight=section.sft_weight,
    )
    summary = train_dpo(
        start,
        data,
        paths.stage("dpo"),
        config,
        _train_config(section, max_steps, recipe.seed),
        resume=resume,
    )
    if _is_main_process():
        write_stage_config(recipe, paths.stage("dpo"), {"pairs": pair_summary})
    _wait_for_everyone()
    return {**summary["result"], "pairs": pair_summary}


def _save_merged(model: Any, processor: Any, paths: RunPaths) -> None:
    """The loop saved the LoRA adapters in final/: keep them in adapter/ and put the
    merged model in final/, which loads like any other ocelli model."""
    import shutil

    from ocelli.model import merge_lora
    from ocelli.utils import atomic_dir

    final, adapter = paths.model("instruct"), paths.stage("instruct") / "adapter"
    shutil.rmtree(adapter, ignore_errors=True)
    final.rename(adapter)
    with atomic_dir(final) as tmp:
        merge_lora(model).save_pretrained(tmp)
        processor.save_pretrained(tmp)


def _process_state() -> Any:
    """accelerate's view of the processes; CPU mode must be asked for, as the loop does,
    or several CPU processes would each believe they are the main one."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _is_main_process() -> bool:
    return _process_state().is_main_process


def _wait_for_everyone() -> None:
    _process_state().wait_for_everyone()


RUNNERS = {
    "vision": run_vision_stage,
    "text": run_text_stage,
    "align": run_align_stage,
    "perceive": run_perceive_stage,
    "instruct": run_instruct_stage,
    "dpo": run_dpo_stage,
}


def run_recipe(
    recipe: Recipe,
    out_dir: str | Path,
    stages: list[str] | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the recipe's enabled stages (or only `stages`); returns per-stage summaries."""
    unknown = set(stages or []) - set(STAGES)
    if unknown:
        raise ConfigError(
            f"unknown stage(s) {', '.join(sorted(unknown))}; stages: {', '.join(STAGES)}"
        )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # ocelli's own bars say what is happening
    paths = RunPaths(out_dir)
    seed_everything(recipe.seed)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    # Under torchrun / accelerate launch, one process writes the world and the tokenizer.
    with _process_state().main_process_first():
        prepare_world(recipe, paths, progress=progress)
        tokenizer = build_tokenizer(recipe, paths)
    timings["world+tokenizer"] = time.perf_counter() - start
    summaries = {}
    for name in STAGES:
        if stages is not None and name not in stages:
            continue
        if stages is None and not getattr(recipe, name).enabled:
            continue
        if name == "vision" and not needs_vision_encoder(recipe):
            continue  # the connector reads the pixels itself
        seed_everything(recipe.seed)
        began = time.perf_counter()
        summaries[name] = RUNNERS[name](recipe, paths, tokenizer, resume, max_steps)
        timings[name] = time.perf_counter() - began
    if _is_main_process():
        atomic_write_json(
            paths.root / "train_summary.json", {"stages": summaries, "timings": timings}
        )
    return {"stages": summaries, "timings": timings, "paths": paths}
