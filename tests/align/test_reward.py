"""The reward model: Bradley-Terry loss, held-out accuracy, and a separable toy
preference it learns in a few steps."""

import json

import pytest
import torch

from ocelli.align.pairs import PreferencePair
from ocelli.align.reward import RewardModel
from ocelli.align.training import load_model_and_processor, split_by_image, train_reward
from ocelli.errors import CheckpointError, ConfigError
from ocelli.train.trainer_config import TrainConfig
from ocelli.world import load_scenes

SHAPES = ("circle", "square", "triangle", "star", "pentagon", "hexagon", "diamond")


def toy_pairs(world_dir):
    """Chosen always names red, rejected blue: separable by one word, held out by image."""
    scenes = load_scenes(world_dir)
    return [
        PreferencePair(
            id=f"toy{index}",
            image=str(world_dir / scene.image),
            prompt="What is in the image?",
            chosen=f"A red {SHAPES[index % len(SHAPES)]}.",
            rejected=f"A blue {SHAPES[index % len(SHAPES)]}.",
            kind="toy",
        )
        for index, scene in enumerate(scenes)
    ]


def test_bradley_terry_loss_and_accuracy(tiny_model_dir):
    backbone, _ = load_model_and_processor(tiny_model_dir)
    model = RewardModel(backbone)
    with torch.no_grad():
        model.head.bias.fill_(0.0)
        model.head.weight.fill_(0.0)
    ids = torch.ones(4, 3, dtype=torch.long)
    outputs = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    # Equal rewards: loss log 2, no pair ranked right.
    assert torch.allclose(outputs["loss"], torch.log(torch.tensor(2.0)))
    assert outputs["accuracy"] == 0.0


def test_split_by_image_keeps_images_apart(world_dir):
    pairs = toy_pairs(world_dir) * 2
    train, held = split_by_image(pairs, 0.25)
    assert {p.image for p in train}.isdisjoint({p.image for p in held})
    assert len(train) + len(held) == len(pairs) and held
    with pytest.raises(ConfigError, match="holdout"):
        split_by_image(pairs, 1.0)


@pytest.mark.slow
def test_learns_a_separable_preference(world_dir, tiny_model_dir, tmp_path):
    torch.set_num_threads(1)
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(p.to_row()) + "\n" for p in toy_pairs(world_dir)))
    config = TrainConfig(lr=3e-3, max_steps=12, batch_size=4, log_every=6, schedule="constant")
    summary = train_reward(tiny_model_dir, data, tmp_path / "rm", config, holdout=0.25)
    assert summary["num_heldout_pairs"] >= 3
    assert summary["heldout_accuracy_before"] <= 0.5  # zero-initialised head: all ties
    assert summary["heldout_accuracy"] == 1.0
    reloaded = RewardModel.from_pretrained(tmp_path / "rm" / "final")
    assert torch.count_nonzero(reloaded.head.weight) > 0
    with pytest.raises(CheckpointError, match="not a reward model"):
        RewardModel.from_pretrained(tiny_model_dir)


def test_cli_reward(world_dir, tiny_model_dir, tmp_path, run_cli):
    torch.set_num_threads(1)
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(p.to_row()) + "\n" for p in toy_pairs(world_dir)))
    args = ["align", "reward", "--model", tiny_model_dir, "--data", data]
    code, stdout, err = run_cli(*args, "--out", tmp_path / "rm", "--max-steps", 1)
    assert code == 0, err
    assert "held-out accuracy" in stdout
    code, _, err = run_cli(*args, "--out", tmp_path / "rm2", "--holdout", "0")
    assert code == 2 and "holdout" in err
