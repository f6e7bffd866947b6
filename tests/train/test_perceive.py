"""Stage 1b, perception warm-up: its data from the world's questions, and its place
between stage 1 and stage 2."""

import json
from dataclasses import replace

import pytest

from ocelli.data import load_conversations
from ocelli.errors import CheckpointError, ConfigError
from ocelli.train.perceive import perception_conversations, write_perception_data
from ocelli.train.recipe import Recipe, load_recipe


@pytest.fixture(scope="module")
def world_train(tmp_path_factory):
    from ocelli.world import QUICKSTART_WORLD, generate_dataset

    out = tmp_path_factory.mktemp("perceive") / "world" / "train"
    config = replace(QUICKSTART_WORLD, langs=["en", "zh"])
    generate_dataset(out, 12, seed=3, split="train", config=config, progress=False)
    return out


def _questions(world_train):
    lines = (world_train / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_one_conversation_per_chosen_question_in_a_seeded_order(world_train):
    records = perception_conversations(world_train, ["attribute", "count/total"], ["en"], seed=0)
    expected = {
        q["id"]: q
        for q in _questions(world_train)
        if q["lang"] == "en"
        and (q["type"] == "attribute" or (q["type"], q["subtype"]) == ("count", "total"))
    }
    assert sorted(r["id"] for r in records) == sorted(expected)
    for record in records:
        question = expected[record["id"]]
        human, answer = record["conversations"]
        assert human == {"from": "human", "value": f"<image>\n{question['question']}"}
        assert answer == {"from": "gpt", "value": question["answer"]}
        assert (world_train / record["image"]).is_file()
    again = perception_conversations(world_train, ["attribute", "count/total"], ["en"], seed=0)
    other = perception_conversations(world_train, ["attribute", "count/total"], ["en"], seed=1)
    assert again == records and other != records and len(other) == len(records)


def test_the_written_file_loads_as_llava_data_against_the_world(world_train, tmp_path):
    out = tmp_path / "perceive" / "data.json"
    count = write_perception_data(world_train, out, ["attribute"], ["en", "zh"], seed=0)
    loaded = load_conversations(out, world_train)
    assert len(loaded) == count > 0
    assert [m["role"] for m in loaded[0].messages] == ["user", "assistant"]
    assert not list(out.parent.glob("*.tmp"))


def test_unknown_types_and_empty_choices_are_named(world_train):
    with pytest.raises(ConfigError, match="atribute.*choose from .*attribute/color"):
        perception_conversations(world_train, ["atribute"], ["en"], seed=0)
    with pytest.raises(ConfigError, match="no training question of attribute in fr"):
        perception_conversations(world_train, ["attribute"], ["fr"], seed=0)


def test_the_stage_is_off_by_default_and_stage_2_then_starts_from_stage_1(world_train):
    from ocelli.train.runners import run_instruct_stage, run_perceive_stage
    from ocelli.train.stages import RunPaths

    assert not Recipe().perceive.enabled
    paths = RunPaths(world_train.parent.parent)
    with pytest.raises(CheckpointError, match="align stage's model"):
        run_instruct_stage(Recipe(), paths, None, False, None)
    with pytest.raises(CheckpointError, match="align stage's model"):
        run_perceive_stage(Recipe(), paths, None, False, None)
    recipe = load_recipe("quickstart", ["perceive.enabled=true"])
    with pytest.raises(CheckpointError, match="perceive stage's model"):
        run_instruct_stage(recipe, paths, None, False, None)
    without_world = RunPaths(world_train.parent.parent / "elsewhere")
    with pytest.raises(ConfigError, match="perceive.data=.*or set perceive.enabled=false"):
        run_perceive_stage(
            Recipe(align=replace(Recipe().align, enabled=False)), without_world, None, False, None
        )
    recipe = load_recipe("quickstart", ["perceive.lora={r: 4}"])
    with pytest.raises(ConfigError, match="perceive.lora is not supported"):
        run_perceive_stage(recipe, paths, None, False, None)
