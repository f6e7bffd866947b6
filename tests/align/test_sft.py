"""Further supervised tuning (LRV-augmented instructions): the records and train_sft."""

import json

import pytest
import torch

from ocelli.align import lrv_conversations, train_sft
from ocelli.data import load_conversations
from ocelli.errors import ConfigError, DataError
from ocelli.train.trainer_config import TrainConfig
from ocelli.world.loading import load_scenes


def test_lrv_conversations_are_the_worlds_negative_instructions(world_dir):
    records = lrv_conversations(world_dir, seed=0)
    scenes = load_scenes(world_dir)
    assert len(scenes) <= len(records) <= 2 * len(scenes)  # existence, size when unique
    for record in records:
        question, answer = (message["content"] for message in record.messages)
        assert question.startswith("<image>\nIs ")
        assert answer.split(",")[0] in ("Yes", "No")
        assert record.images[0].is_file()
    assert lrv_conversations(world_dir, seed=0) == records  # same world and seed, same records


def test_lrv_conversations_refuse_a_missing_world(tmp_path):
    with pytest.raises(DataError, match="ocelli world generate"):
        lrv_conversations(tmp_path / "nowhere")


def test_train_sft_mixes_lrv_into_the_instructions(tiny_model_dir, world_dir, tmp_path):
    records = load_conversations(world_dir / "conversations.json")[:4]
    records += lrv_conversations(world_dir)[:4]
    out = tmp_path / "lrv-sft"
    config = TrainConfig(lr=1e-3, max_steps=3, batch_size=4, log_every=1)
    summary = train_sft(tiny_model_dir, records, out, config)
    assert summary["num_records"] == 8 and summary["result"]["steps"] == 3
    assert json.loads((out / "sft_summary.json").read_text())["train"]["max_steps"] == 3
    from ocelli.model import OcelliForConditionalGeneration

    before = OcelliForConditionalGeneration.from_pretrained(str(tiny_model_dir))
    after = OcelliForConditionalGeneration.from_pretrained(str(out / "final"))
    changed = {
        name
        for (name, old), (_, new) in zip(
            before.named_parameters(), after.named_parameters(), strict=True
        )
        if not torch.equal(old, new)
    }
    assert changed and not any(name.startswith("vision_tower") for name in changed)
    assert (out / "final" / "tokenizer_config.json").is_file()


def test_train_sft_refuses_no_records_and_a_missing_model(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="no conversation records"):
        train_sft(tiny_model_dir, [], tmp_path / "out")
    from ocelli.errors import CheckpointError

    with pytest.raises(CheckpointError, match="not a saved ocelli model"):
        train_sft(tmp_path / "missing", [object()], tmp_path / "out")
