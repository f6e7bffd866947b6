import json
import random
import shutil

import numpy as np
import pytest
import torch
from tiny_training import TinyModel, make_model, train_tiny, weights

from ocelli.errors import CheckpointError, ConfigError
from ocelli.train import checkpoint as ckpt
from ocelli.train.progress import read_metrics


def checkpoint_dirs(out_dir):
    return sorted(p.name for p in (out_dir / "checkpoints").iterdir())


def test_checkpoint_layout_and_keep_last_pruning(tmp_path):
    train_tiny(tmp_path, max_steps=10, save_every=2, keep_last=2)
    assert checkpoint_dirs(tmp_path) == ["step-000008", "step-000010"]
    latest = tmp_path / "checkpoints" / "step-000010"
    for name in ckpt.CHECKPOINT_FILES:
        assert (latest / name).is_file(), name
    assert (latest / "model" / "model.safetensors").is_file()
    state = json.loads((latest / "trainer_state.json").read_text())
    assert state["step"] == 10 and state["samples_seen"] == 40 and state["epoch"] == 0
    assert state["config"]["save_every"] == 2 and "provenance" in state


def test_keep_last_zero_keeps_every_checkpoint(tmp_path):
    train_tiny(tmp_path, max_steps=6, save_every=2, keep_last=0)
    assert checkpoint_dirs(tmp_path) == ["step-000002", "step-000004", "step-000006"]


def test_optimizer_state_round_trips_through_safetensors_and_json(tmp_path):
    model = make_model()
    optimizer = torch.optim.AdamW(
        [{"params": list(model.parameters()), "name": "all"}], lr=1e-2, betas=(0.8, 0.9)
    )
    for _ in range(3):
        model(inputs=torch.randn(4, 8), targets=torch.randn(4, 1))["loss"].backward()
        optimizer.step()
    tensors, meta = ckpt.flatten_optimizer_state(optimizer.state_dict())
    assert "state.0.exp_avg" in tensors and "state.0.step" in tensors
    meta = json.loads(json.dumps(meta))  # what optimizer.json holds
    fresh = torch.optim.AdamW([{"params": list(model.parameters()), "name": "all"}], lr=1.0)
    fresh.load_state_dict(ckpt.unflatten_optimizer_state(tensors, meta, fresh))
    restored, original = fresh.state_dict(), optimizer.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    assert fresh.param_groups[0]["betas"] == (0.8, 0.9)
    for index, entries in original["state"].items():
        for key, value in entries.items():
            assert torch.equal(restored["state"][index][key], value), (index, key)


def test_rng_state_round_trips():
    state = json.loads(json.dumps(ckpt.capture_rng_state()))
    expected = (torch.rand(3), random.random(), np.random.rand())
    ckpt.restore_rng_state(state)
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]


def test_a_failure_while_saving_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    original = ckpt.save_rng_states
    calls = []

    def failing_save(states, directory):
        calls.append(directory)
        (directory / "rng.json").write_text("{")  # half written when the failure hits
        if len(calls) == 2:
            raise OSError("disk full")
        original(states, directory)

    monkeypatch.setattr(ckpt, "save_rng_states", failing_save)
    with pytest.raises(OSError, match="disk full"):
        train_tiny(tmp_path, max_steps=6, save_every=2)
    assert checkpoint_dirs(tmp_path) == ["step-000002"]  # no step-000004, no temporary
    monkeypatch.setattr(ckpt, "save_rng_states", original)
    _, result = train_tiny(tmp_path, max_steps=6, save_every=2, resume=True)
    assert result.start_step == 2 and result.steps == 6


def test_temporaries_left_by_a_crash_are_ignored_and_removed(tmp_path):
    train_tiny(tmp_path, max_steps=4, save_every=2)
    stale = tmp_path / "checkpoints" / ".step-000006.x1y2.tmp"
    stale.mkdir()
    (stale / "trainer_state.json").write_text("{")
    _, result = train_tiny(tmp_path, max_steps=6, save_every=2, resume=True)
    assert result.start_step == 4 and result.steps == 6
    assert not stale.exists()


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda d: (d / "optimizer.json").unlink(), "incomplete.*optimizer.json"),
        (lambda d: (d / "model" / "model.safetensors").unlink(), "incomplete.*model/"),
        (
            lambda d: (d / "trainer_state.json").write_text("{not json"),
            "trainer_state.json is unreadable",
        ),
        (lambda d: (d / "optimizer.safetensors").write_bytes(b"\x00" * 12), "could not be loaded"),
    ],
)
def test_a_damaged_checkpoint_is_a_checkpoint_error_naming_it(tmp_path, damage, fragment):
    train_tiny(tmp_path, max_steps=4, save_every=2)
    latest = tmp_path / "checkpoints" / "step-000004"
    damage(latest)
    with pytest.raises(CheckpointError, match=fragment) as error:
        train_tiny(tmp_path, max_steps=6, resume=True)
    assert str(latest) in str(error.value)


def test_resume_from_a_missing_path_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        train_tiny(tmp_path, resume=tmp_path / "checkpoints" / "step-000123")


def test_resume_with_another_architecture_is_a_checkpoint_error(tmp_path):
    train_tiny(tmp_path, max_steps=2)
    with pytest.raises(CheckpointError, match="do not match the model"):
        train_tiny(tmp_path, model=TinyModel(hidden=4), max_steps=4, resume=True)


def test_resume_without_checkpoints_starts_fresh(tmp_path):
    _, result = train_tiny(tmp_path, max_steps=3, resume=True)
    assert result.start_step == 0 and result.steps == 3


def test_existing_checkpoints_without_resume_are_a_config_error(tmp_path):
    train_tiny(tmp_path, max_steps=2)
    with pytest.raises(ConfigError, match="resume=True"):
        train_tiny(tmp_path, max_steps=2)


def test_resume_with_a_different_global_batch_is_a_config_error(tmp_path):
    train_tiny(tmp_path, max_steps=2)
    with pytest.raises(ConfigError, match="global_batch_size 4 -> 8"):
        train_tiny(tmp_path, max_steps=4, batch_size=8, resume=True)


def test_resume_from_an_earlier_checkpoint_needs_the_later_ones_gone(tmp_path):
    train_tiny(tmp_path, max_steps=6, save_every=2, keep_last=0)
    earlier = tmp_path / "checkpoints" / "step-000002"
    with pytest.raises(ConfigError, match="step-000004, step-000006"):
        train_tiny(tmp_path, max_steps=6, resume=earlier)


def test_resuming_a_finished_run_restores_its_weights(tmp_path):
    trained, _ = train_tiny(tmp_path, max_steps=4)
    fresh, result = train_tiny(tmp_path, max_steps=4, resume=True)
    assert result.start_step == 4 and result.steps == 4
    for name, tensor in weights(trained).items():
        assert torch.equal(weights(fresh)[name], tensor)


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path):
    train_tiny(tmp_path, max_steps=4, save_every=2, keep_last=0)
    shutil.rmtree(tmp_path / "checkpoints" / "step-000004")  # as if killed before saving it
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 9, "loss": 1.0')  # a line cut short by a kill
    train_tiny(tmp_path, max_steps=5, save_every=2, keep_last=0, resume=True)
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4, 5]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line) for line in lines)


def test_transformers_model_checkpoints_with_save_pretrained(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from ocelli.train import TrainConfig, train

    def tiny_llama():
        torch.manual_seed(0)
        return LlamaForCausalLM(
            LlamaConfig(
                vocab_size=32,
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                num_key_value_heads=2,
                tie_word_embeddings=True,
            )
        )

    generator = torch.Generator().manual_seed(0)
    dataset = [torch.randint(0, 32, (6,), generator=generator) for _ in range(16)]

    def collate(items):
        ids = torch.stack(items)
        return {"input_ids": ids, "labels": ids}

    config = TrainConfig(max_steps=2, batch_size=4, lr=1e-2, save_every=1, tensorboard=False)
    trained = tiny_llama()
    result = train(trained, dataset, collate, config, tmp_path)
    assert result.tokens_per_s > 0
    checkpoint = tmp_path / "checkpoints" / "step-000002" / "model"
    assert (checkpoint / "config.json").is_file() and (checkpoint / "model.safetensors").is_file()
    assert LlamaForCausalLM.from_pretrained(tmp_path / "final") is not None
    fresh = tiny_llama()
    train(fresh, dataset, collate, config, tmp_path, resume=True)  # tied weights stored once
    for name, tensor in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
