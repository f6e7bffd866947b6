"""ocelli.world: a procedurally generated visual world with exact ground truth.

Scenes of coloured shapes are drawn from a seed, rendered to small images, and
described by captions and questions (English and Chinese) whose answers are computed
from the scene graph, so every answer can be checked exactly. It is ocelli's default
data: small enough to train a multimodal model from scratch on a laptop CPU.

    from ocelli.world import WorldConfig, generate_dataset
    generate_dataset("data/world", num_images=1000, seed=0, split="train")

See docs/world.md for the file formats, question types, splits and modes.
"""

from ocelli.world.cli import generate_command, show_command
from ocelli.world.config import (
    BASE_WORLD,
    QUESTION_TYPES,
    QUICKSTART_WORLD,
    SORT_OF_CLEVR_TYPES,
    WORLD_PRESETS,
    WorldConfig,
    load_world_config,
    world_preset,
)
from ocelli.world.contact_sheet import write_contact_sheet
from ocelli.world.dataset import generate_dataset
from ocelli.world.loading import (
    as_hf_dataset,
    load_captions,
    load_conversations,
    load_meta,
    load_questions,
    load_scenes,
)
from ocelli.world.questions import TYPE_FAMILIES, questions_for_scene
from ocelli.world.render import render_scene
from ocelli.world.scenes import Scene, SceneObject, generate_scene, generate_scenes
from ocelli.world.splits import (
    COGENT_COLORS_1,
    COGENT_COLORS_2,
    COGENT_SHAPES_1,
    COGENT_SHAPES_2,
    SPLITS,
    allowed_combos,
    split_seed,
)
from ocelli.world.text import template_table
from ocelli.world.vocab import (
    COLORS,
    COLORS_ZH,
    LABEL_WORDS,
    NO,
    SHAPE_PLURALS,
    SHAPES,
    SHAPES_ZH,
    SIZES,
    SIZES_ZH,
    SYNONYMS_EN,
    SYNONYMS_ZH,
    VOCAB,
    YES,
    answer_synonyms,
    translate,
)

__all__ = [
    "BASE_WORLD",
    "COGENT_COLORS_1",
    "COGENT_COLORS_2",
    "COGENT_SHAPES_1",
    "COGENT_SHAPES_2",
    "COLORS",
    "COLORS_ZH",
    "LABEL_WORDS",
    "NO",
    "QUESTION_TYPES",
    "QUICKSTART_WORLD",
    "SHAPES",
    "SHAPES_ZH",
    "SHAPE_PLURALS",
    "SIZES",
    "SIZES_ZH",
    "SORT_OF_CLEVR_TYPES",
    "SPLITS",
    "SYNONYMS_EN",
    "SYNONYMS_ZH",
    "TYPE_FAMILIES",
    "VOCAB",
    "WORLD_PRESETS",
    "YES",
    "Scene",
    "SceneObject",
    "WorldConfig",
    "allowed_combos",
    "answer_synonyms",
    "as_hf_dataset",
    "generate_command",
    "generate_dataset",
    "generate_scene",
    "generate_scenes",
    "load_captions",
    "load_conversations",
    "load_meta",
    "load_questions",
    "load_scenes",
    "load_world_config",
    "questions_for_scene",
    "render_scene",
    "show_command",
    "split_seed",
    "template_table",
    "translate",
    "world_preset",
    "write_contact_sheet",
]
