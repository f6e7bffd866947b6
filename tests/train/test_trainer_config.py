import math

import pytest

from ocelli.config import from_dict
from ocelli.errors import ConfigError
from ocelli.train import TrainConfig
from ocelli.train.trainer_config import lr_multiplier, plan_steps


def test_unknown_key_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="learning_rate"):
        from_dict(TrainConfig, {"lr": 1e-3, "learning_rate": 1e-3}, where="align.train")


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"schedule": "exponential"}, "schedule"),
        ({"max_steps": 10, "epochs": 2}, "max_steps or epochs"),
        ({"warmup_steps": 5, "warmup_ratio": 0.1}, "warmup_steps or warmup_ratio"),
        ({"batch_size": 0}, "batch_size"),
        ({"mixed_precision": "fp16"}, "mixed_precision"),
        ({"betas": [0.9]}, "betas"),
        ({"lr": -1.0}, "lr"),
        ({"min_lr_ratio": 2.0}, "min_lr_ratio"),
        ({"compile": "fast"}, "compile: expected true or false, got 'fast'"),
    ],
)
def test_invalid_values_are_config_errors(fields, fragment):
    with pytest.raises(ConfigError, match=fragment):
        from_dict(TrainConfig, fields)


def test_compile_outside_yaml_must_be_a_bool():
    with pytest.raises(ConfigError, match="compile must be true or false, got 'fast'"):
        TrainConfig(compile="fast")


def test_yaml_values_are_coerced():
    config = from_dict(TrainConfig, {"betas": [0.9, 0.95], "lr": "3e-4", "max_grad_norm": None})
    assert config.betas == (0.9, 0.95)
    assert config.lr == 3e-4
    assert config.max_grad_norm is None


def test_schedule_warms_up_then_decays_to_the_floor():
    total, warmup, floor = 100, 10, 0.1
    factors = [lr_multiplier(s, total, warmup, "cosine", floor) for s in range(total + 1)]
    assert factors[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert factors[warmup - 1] == 1.0
    decay = factors[warmup:]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))
    assert decay[0] == 1.0
    assert factors[warmup + 45] == pytest.approx((1 + floor) / 2)  # halfway down the cosine
    assert factors[total] == pytest.approx(floor)
    assert min(factors) >= floor


def test_linear_and_constant_schedules():
    assert lr_multiplier(55, 100, 10, "linear", 0.0) == pytest.approx(0.5)
    assert lr_multiplier(100, 100, 10, "linear", 0.2) == pytest.approx(0.2)
    assert {lr_multiplier(s, 100, 10, "constant", 0.1) for s in range(10, 100)} == {1.0}
    assert lr_multiplier(0, 100, 0, "cosine", 0.0) == 1.0  # no warm-up: full rate at once


def test_plan_steps_from_epochs_and_warmup_ratio():
    config = TrainConfig(epochs=3, batch_size=4, grad_accum_steps=2, warmup_ratio=0.1)
    plan = plan_steps(config, num_samples=70, num_processes=2)
    assert plan.global_batch_size == 16
    assert plan.steps_per_epoch == 4  # 70 // 16: the incomplete batch is dropped
    assert plan.total_steps == 12
    assert plan.warmup_steps == 1
    assert plan_steps(TrainConfig(batch_size=4), 10, 1).total_steps == 2  # one epoch by default
    assert math.isclose(plan_steps(TrainConfig(max_steps=7), 100, 1).total_steps, 7)


def test_dataset_smaller_than_a_global_batch_is_a_config_error():
    with pytest.raises(ConfigError, match="fewer than one global batch of 16"):
        plan_steps(TrainConfig(batch_size=8, grad_accum_steps=2), num_samples=10, num_processes=1)


def test_fused_adamw_takes_the_steps_of_the_textbook_one():
    import torch

    from ocelli.train.trainer_config import build_optimizer

    config = TrainConfig(lr=1e-2, weight_decay=0.1, schedule="constant", max_steps=5)
    plan = plan_steps(config, num_samples=8, num_processes=1)
    models = [torch.nn.Linear(6, 4) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    fused, _ = build_optimizer(models[0], None, config, plan)
    assert fused.defaults["fused"]
    weight, bias = models[1].parameters()  # matrices decay, vectors do not, as in ocelli
    textbook = torch.optim.AdamW(
        [{"params": [weight], "weight_decay": 0.1}, {"params": [bias], "weight_decay": 0.0}],
        lr=config.lr,
    )
    inputs = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        for model, optimizer in zip(models, (fused, textbook), strict=True):
            model(inputs).square().sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    for ours, theirs in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
