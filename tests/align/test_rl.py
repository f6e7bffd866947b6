"""RL against a reward: advantages and the loss against hand values, the KL estimate,
the two rewards, a short run on a tiny model and the CLI's errors."""

import json
import math

import pytest
import torch

from ocelli.align.rewards import (
    LearnedReward,
    RLPrompt,
    WorldReward,
    reward_from_spec,
    world_prompts,
)
from ocelli.align.rl import RLConfig, group_advantages, per_token_kl, policy_loss
from ocelli.align.training import load_model_and_processor, train_rl
from ocelli.errors import CheckpointError, ConfigError, DataError
from ocelli.train.trainer_config import TrainConfig


def test_grpo_advantages_hand_values():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5])
    advantages = group_advantages(rewards, 3, "grpo")
    # Group 1: mean 1/3, unbiased std sqrt(1/3); group 2: mean 2/3, std sqrt(1/12).
    std1, std2 = math.sqrt(1 / 3), math.sqrt(1 / 12)
    expected = [
        (2 / 3) / (std1 + 1e-4),
        (-1 / 3) / (std1 + 1e-4),
        (-1 / 3) / (std1 + 1e-4),
        (1 / 3) / (std2 + 1e-4),
        (-1 / 6) / (std2 + 1e-4),
        (-1 / 6) / (std2 + 1e-4),
    ]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-5)
    # A group whose answers all score the same teaches nothing.
    assert torch.equal(group_advantages(torch.ones(4), 2), torch.zeros(4))


def test_rloo_advantages_hand_values():
    advantages = group_advantages(torch.tensor([1.0, 0.0, 0.5, 3.0, 1.0]), 5, "rloo")
    # r_i minus the mean of the four others (sum 5.5).
    expected = [1 - 4.5 / 4, 0 - 5.5 / 4, 0.5 - 5.0 / 4, 3 - 2.5 / 4, 1 - 4.5 / 4]
    assert torch.allclose(advantages, torch.tensor(expected))
    with pytest.raises(ConfigError, match="groups of 2"):
        group_advantages(torch.ones(3), 2)


def test_kl_is_zero_when_policy_is_reference():
    log_probs = -torch.rand(3, 5) * 4
    assert torch.equal(per_token_kl(log_probs, log_probs), torch.zeros(3, 5))
    mask = torch.ones(3, 5, dtype=torch.bool)
    loss, kl = policy_loss(log_probs, log_probs.clone(), torch.zeros(3), mask, kl_coef=0.5)
    assert kl == 0 and loss == 0
    # k3 estimate at ref - policy = d: e^d - d - 1, e.g. d = log 2 -> 1 - log 2.
    value = per_token_kl(torch.tensor([0.0]), torch.tensor([math.log(2)]))
    assert torch.allclose(value, torch.tensor([1 - math.log(2)]))


def test_policy_loss_hand_values():
    policy = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, -9.0]], requires_grad=True)
    reference = torch.tensor([[-1.0, -1.0, -0.5], [-0.3, -1.2, -9.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])  # 2 and 1 tokens
    advantages = torch.tensor([1.0, -2.0])
    kl = math.e - 1 - 1  # only token (0, 1) differs: d = 1, e^1 - 1 - 1
    # Row 0: tokens -1 and -1 + 0.1 * kl; row 1: one token +2.
    token_loss, mean_kl = policy_loss(policy, reference, advantages, mask, 0.1, "token")
    assert torch.allclose(token_loss, torch.tensor((-1 + (-1 + 0.1 * kl) + 2) / 3))
    assert torch.allclose(mean_kl, torch.tensor(kl / 3))
    sequence_loss, _ = policy_loss(policy, reference, advantages, mask, 0.1, "sequence")
    assert torch.allclose(sequence_loss, torch.tensor(((-2 + 0.1 * kl) / 2 + 2) / 2))
    # The ratio is 1 but carries the policy gradient: d loss / d log pi = -A / tokens.
    token_loss.backward()
    kl_grad = 0.1 * (1 - math.e) / 3  # d/dx of e^(ref - x) - (ref - x) - 1 at d = 1
    expected = torch.tensor([[-1 / 3, -1 / 3 + kl_grad, 0.0], [2 / 3, 0.0, 0.0]])
    assert torch.allclose(policy.grad, expected, atol=1e-6)


def test_config_errors():
    with pytest.raises(ConfigError, match="group_size must be at least 2"):
        RLConfig(group_size=1)
    with pytest.raises(ConfigError, match="kl_coef"):
        RLConfig(kl_coef=-0.1)
    with pytest.raises(ConfigError, match="advantage"):
        RLConfig(advantage="ppo")
    with pytest.raises(ConfigError, match="temperature"):
        RLConfig(temperature=0)


def test_world_prompts_and_verifiable_reward(world_dir):
    prompts = world_prompts(world_dir)
    kinds = {p.kind for p in prompts}
    assert kinds == {"vqa", "describe"}
    assert len(world_prompts(world_dir, ["vqa"], limit=5)) == 5
    reward = WorldReward(world_dir)
    question = next(p for p in prompts if p.kind == "vqa" and p.question_type != "reasoning")
    assert reward([question] * 2, [question.answer + ".", "certainly not that"]) == [1.0, 0.0]
    describe = next(p for p in prompts if p.kind == "describe")
    from ocelli.world.loading import load_conversations

    truth = next(
        r["conversations"][1]["value"]
        for r in load_conversations(world_dir, "describe.json")
        if r["id"] == describe.id
    )
    perfect, empty = reward([describe, describe], [truth, ""])
    assert perfect == 1.0 and empty == 0.0
    with pytest.raises(ConfigError, match="choose from"):
        world_prompts(world_dir, ["captions"])
    with pytest.raises(DataError, match="not found"):
        world_prompts(world_dir / "missing")


def test_reward_spec_and_reward_model_checks(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="model:DIR"):
        reward_from_spec("judge", tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        reward_from_spec(f"model:{tmp_path / 'nothing'}", tmp_path)
    with pytest.raises(CheckpointError, match="not a reward model"):
        LearnedReward(tiny_model_dir)
    # An ocelli model whose reward head was trained on another hidden size.
    import shutil

    from safetensors.torch import save_file

    other = tmp_path / "other-rm"
    shutil.copytree(tiny_model_dir, other)
    save_file(
        {"weight": torch.zeros(1, 7), "bias": torch.zeros(1)}, other / "reward_head.safetensors"
    )
    with pytest.raises(CheckpointError, match="another architecture"):
        LearnedReward(other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(CheckpointError, match="not an ocelli one"):
        LearnedReward(other)


def test_learned_reward_scores_with_its_head(world_dir, tiny_model_dir, tmp_path):
    from ocelli.align.reward import RewardModel

    backbone, processor = load_model_and_processor(tiny_model_dir)
    model = RewardModel(backbone)
    with torch.no_grad():
        model.head.bias.fill_(0.25)
    model.save_pretrained(tmp_path / "rm")
    processor.save_pretrained(tmp_path / "rm")
    prompt = world_prompts(world_dir, ["vqa"], limit=1)[0]
    scores = LearnedReward(tmp_path / "rm")([prompt, prompt], ["yes", "two red circles"])
    assert scores == pytest.approx([0.25, 0.25])  # zero weights: the bias alone


class _AnswerLength:
    """A toy verifiable reward: shorter answers score higher (easy to learn in a few
    steps from a random model, whose answers run to max_new_tokens)."""

    name = "toy:short"

    def __call__(self, prompts, responses):
        return [-float(len(response.split())) for response in responses]


@pytest.mark.slow
def test_rl_run_raises_the_reward_and_saves(world_dir, tiny_model_dir, tmp_path):
    import ocelli

    torch.set_num_threads(1)
    config = RLConfig(group_size=4, kl_coef=0.01, max_new_tokens=8, kinds=["vqa"], num_prompts=8)
    train = TrainConfig(lr=3e-3, max_steps=8, batch_size=2, log_every=4, schedule="constant")
    summary = train_rl(tiny_model_dir, world_dir, _AnswerLength(), tmp_path / "rl", config, train)
    lines = [json.loads(x) for x in (tmp_path / "rl" / "rl_metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 9))
    assert {"loss", "reward_mean", "kl", "reward_std"} <= set(lines[0])
    assert lines[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the first step samples the reference
    first = sum(line["reward_mean"] for line in lines[:2]) / 2
    last = sum(line["reward_mean"] for line in lines[-2:]) / 2
    assert last > first, [line["reward_mean"] for line in lines]
    saved = json.loads((tmp_path / "rl" / "rl_config.json").read_text())
    assert saved["rl"]["group_size"] == 4 and saved["reward"] == "toy:short"
    assert summary["result"]["steps"] == 8
    final = tmp_path / "rl" / "final"
    assert (final / "model.safetensors").is_file()
    aligned = ocelli.load(final)
    prompt = world_prompts(world_dir, ["vqa"], limit=1)[0]
    assert isinstance(aligned.chat(prompt.image, prompt.prompt, max_new_tokens=4), str)
    # The starting model on disk is unchanged, and the run moved away from it.
    start, _ = load_model_and_processor(tiny_model_dir)
    moved = [
        not torch.equal(value, aligned.model.state_dict()[name])
        for name, value in start.state_dict().items()
    ]
    assert any(moved)


def test_cli_rl_world_reward_and_bad_input(world_dir, tiny_model_dir, tmp_path, run_cli):
    torch.set_num_threads(1)
    out = tmp_path / "rl"
    args = ["align", "rl", "--model", tiny_model_dir, "--world", world_dir, "--out", out]
    small = ["--max-steps", 1, "--batch-size", 1, "--group-size", 2, "--max-new-tokens", 4]
    code, stdout, err = run_cli(*args, *small, "--num-prompts", 2, "--reward", "world")
    assert code == 0, err
    assert "reward mean" in stdout and (out / "final" / "config.json").is_file()
    assert (out / "final" / "tokenizer_config.json").is_file()
    config = json.loads((out / "rl_config.json").read_text())
    assert config["reward"] == "world" and config["num_prompts"] == 2
    assert len((out / "rl_metrics.jsonl").read_text().splitlines()) == 1
    code, _, err = run_cli(*args, "--group-size", 1)
    assert code == 2 and "group_size must be at least 2" in err
    code, _, err = run_cli(*args, "--reward", f"model:{tmp_path / 'none'}")
    assert code == 2 and "reward model directory" in err and "not found" in err
    code, _, err = run_cli(*args, "--reward", f"model:{tiny_model_dir}")
    assert code == 2 and "not a reward model" in err
    code, _, err = run_cli(*args, "--reward", "gpt")
    assert code == 2 and "model:DIR" in err
    code, _, err = run_cli(*args[:3], tmp_path, *args[4:])
    assert code == 2 and "not a saved ocelli model" in err
    code, _, err = run_cli(*args[:5], tmp_path / "no-world", *args[6:])
    assert code == 2 and "not found" in err


def test_rl_prompt_messages_use_the_image_placeholder():
    prompt = RLPrompt("q", "x.png", "How many circles?", "vqa", "x", "2", "count")
    assert prompt.messages("2")[0]["content"] == "<image>\nHow many circles?"
