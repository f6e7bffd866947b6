"""DPO and IPO: losses against hand values and TRL's own code, segment weights, and a
few training steps on a tiny model that raise the preference margin."""

import json
import types
from collections import defaultdict

import pytest
import torch

from ocelli.align.batches import PairCollator, PreferenceDataset, token_weights
from ocelli.align.dpo import (
    DPOConfig,
    DPOModel,
    frozen_copy,
    preference_loss,
    preference_margins,
    sft_loss,
)
from ocelli.align.pairs import PreferencePair, load_pairs
from ocelli.align.training import load_model_and_processor, train_dpo
from ocelli.errors import CheckpointError, ConfigError
from ocelli.train.trainer_config import TrainConfig


def _log_probs(seed=0, batch=3):
    generator = torch.Generator().manual_seed(seed)
    return [-(torch.rand(batch, generator=generator) * 20) for _ in range(4)]


def test_sigmoid_loss_hand_value():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-3.0, -5.0, -4.0, -4.5))
    # margin = (-3 + 4) - (-5 + 4.5) = 1.5; loss = -log sigmoid(0.1 * 1.5)
    expected = -torch.nn.functional.logsigmoid(torch.tensor(0.15))
    assert torch.allclose(preference_loss(pc, pr, rc, rr, beta=0.1), expected)


def test_ipo_loss_hand_value():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-3.0, -5.0, -4.0, -4.5))
    lengths_c, lengths_r = torch.tensor([2]), torch.tensor([4])
    gap = 1.0 / 2 - (-0.5) / 4
    expected = torch.tensor((gap - 1 / (2 * 0.5)) ** 2)
    loss = preference_loss(pc, pr, rc, rr, 0.5, "ipo", lengths_c, lengths_r)
    assert torch.allclose(loss, expected)


def test_sft_term_hand_value():
    # Two chosen rows: 2 tokens summing to -3, 4 tokens summing to -5: NLL per token 8 / 6.
    loss = sft_loss(torch.tensor([-3.0, -5.0]), torch.tensor([2, 4]))
    assert torch.allclose(loss, torch.tensor(8.0 / 6.0))
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-3.0, -5.0, -4.0, -4.5))
    total = preference_loss(pc, pr, rc, rr, beta=0.1) + 0.5 * sft_loss(pc, torch.tensor([2]))
    expected = -torch.nn.functional.logsigmoid(torch.tensor(0.15)) + 0.5 * 1.5
    assert torch.allclose(total, expected)


def test_sft_term_in_the_model_loss(tiny_model_dir, short_pairs):
    """DPOModel's loss with sft_weight is the DPO loss plus that much of the chosen
    responses' mean token NLL, computed here from the policy's logits by hand."""
    from ocelli.align.batches import row_logits

    torch.manual_seed(0)
    policy, processor = load_model_and_processor(tiny_model_dir)
    dataset = PreferenceDataset(load_pairs(short_pairs)[:3], processor)
    batch = PairCollator(processor.pad_token_id)([dataset[i] for i in range(3)])
    plain = DPOModel(policy, frozen_copy(policy), DPOConfig(beta=0.1))(**batch)["loss"]
    with_sft = DPOModel(policy, frozen_copy(policy), DPOConfig(beta=0.1, sft_weight=0.7))(**batch)
    logits = row_logits(policy, batch)[:3, :-1]
    targets = batch["labels"][:3, 1:]
    mask = targets != -100
    nll = torch.nn.functional.cross_entropy(logits[mask], targets[mask])
    assert torch.allclose(with_sft["sft_loss"], nll, atol=1e-5)
    assert torch.allclose(with_sft["loss"], plain + 0.7 * nll, atol=1e-5)
    with pytest.raises(ConfigError, match="sft_weight"):
        DPOConfig(sft_weight=-1)


def _trl_loss(loss_type, beta, per_token_policy, per_token_ref, completion_mask, sft_weight=0.0):
    """TRL's DPOTrainer._compute_loss run on given per-token log-probs: a stand-in
    trainer and model supply exactly what that method reads."""
    from trl.trainer.dpo_trainer import DPOTrainer

    accelerator = types.SimpleNamespace(
        device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x
    )
    ref_logps = (per_token_ref * completion_mask[:, 1:]).sum(1)
    trainer = types.SimpleNamespace(
        model=types.SimpleNamespace(training=True),
        accelerator=accelerator,
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type] + (["sft"] if sft_weight else []),
        loss_weights=[1.0] + ([sft_weight] if sft_weight else []),
        beta=beta,
        label_smoothing=0.0,
        use_weighting=False,
        _metrics={"train": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    shape = per_token_policy.shape

    def model(**kwargs):
        return types.SimpleNamespace(
            log_probs=per_token_policy * completion_mask[:, 1:],
            entropy=torch.zeros(shape),
            mean_logits=torch.zeros(shape),
            is_top1=torch.zeros(shape, dtype=torch.bool),
        )

    chosen_ref, rejected_ref = ref_logps.chunk(2)
    inputs = {
        "input_ids": torch.zeros(completion_mask.shape, dtype=torch.long),
        "attention_mask": torch.ones_like(completion_mask),
        "completion_mask": completion_mask,
        "ref_chosen_logps": chosen_ref,
        "ref_rejected_logps": rejected_ref,
    }
    return DPOTrainer._compute_loss(trainer, model, inputs, False)


@pytest.mark.parametrize(("loss_type", "beta"), [("sigmoid", 0.1), ("sigmoid", 2.0), ("ipo", 0.5)])
def test_losses_equal_trls(loss_type, beta):
    pytest.importorskip("trl")
    generator = torch.Generator().manual_seed(1)
    rows, length = 6, 9  # 3 chosen rows, then 3 rejected
    policy = -torch.rand(rows, length - 1, generator=generator) * 3
    reference = -torch.rand(rows, length - 1, generator=generator) * 3
    completion_mask = torch.zeros(rows, length, dtype=torch.long)
    for row, start in enumerate([2, 3, 5, 1, 4, 6]):
        completion_mask[row, start:] = 1
    mask = completion_mask[:, 1:].float()
    ours_policy, ours_ref = (policy * mask).sum(1), (reference * mask).sum(1)
    lengths = completion_mask.sum(1)
    ours = preference_loss(
        *ours_policy.chunk(2), *ours_ref.chunk(2), beta, loss_type, *lengths.chunk(2)
    )
    theirs = _trl_loss(loss_type, beta, policy, reference, completion_mask)
    assert torch.allclose(ours, theirs, atol=1e-6), (ours, theirs)
    # With the SFT term: TRL's loss_type ["sigmoid", "sft"], loss_weights [1, alpha].
    chosen_sums, chosen_lengths = ours_policy.chunk(2)[0], mask.sum(1).chunk(2)[0]
    ours_sft = ours + 0.3 * sft_loss(chosen_sums, chosen_lengths)
    theirs_sft = _trl_loss(loss_type, beta, policy, reference, completion_mask, sft_weight=0.3)
    assert torch.allclose(ours_sft, theirs_sft, atol=1e-6), (ours_sft, theirs_sft)


def test_token_weights_mark_the_changed_span(tiny_model_dir):
    _, processor = load_model_and_processor(tiny_model_dir)
    pair = PreferencePair("p", "x.png", "Is there a red star?", "no", "yes", "answer")
    response = "A large red circle is at the top."
    encoded = processor.encode_conversation(pair.messages(response), 1)
    span = (response.index("red"), response.index("red") + 3)
    weights = token_weights(processor, response, encoded["labels"], [span], 5.0)
    labelled = [w for w, label in zip(weights, encoded["labels"], strict=True) if label != -100]
    assert 5.0 in labelled and labelled.count(5.0) < len(labelled)
    assert sum(w > 0 for w in weights) == len(labelled)
    plain = token_weights(processor, response, encoded["labels"], [span], 1.0)
    assert set(plain) == {0.0, 1.0}


def test_config_and_reference_checks(tiny_model_dir):
    with pytest.raises(ConfigError, match="choose from"):
        DPOConfig(loss="kto")
    with pytest.raises(ConfigError, match="beta"):
        DPOConfig(beta=0)
    policy, _ = load_model_and_processor(tiny_model_dir)
    other = frozen_copy(policy)
    other.resize_token_embeddings(policy.get_input_embeddings().num_embeddings + 8)
    with pytest.raises(CheckpointError, match="embeddings"):
        DPOModel(policy, other, DPOConfig())


def test_reference_is_not_part_of_the_state(tiny_model_dir):
    policy, _ = load_model_and_processor(tiny_model_dir)
    wrapper = DPOModel(policy, frozen_copy(policy), DPOConfig())
    assert set(wrapper.state_dict()) == {f"policy.{k}" for k in policy.state_dict()}
    assert all(not p.requires_grad for p in wrapper.reference.parameters())


@pytest.mark.slow
@pytest.mark.parametrize(("loss", "segment_weight"), [("sigmoid", 1.0), ("ipo", 3.0)])
def test_dpo_steps_raise_the_margin(tiny_model_dir, short_pairs, tmp_path, loss, segment_weight):
    import ocelli

    torch.set_num_threads(1)
    pairs = load_pairs(short_pairs)[:16]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p.to_row()) + "\n" for p in pairs))
    policy, processor = load_model_and_processor(tiny_model_dir)
    dataset = PreferenceDataset(pairs, processor)
    collate = PairCollator(processor.pad_token_id)
    before = preference_margins(policy, dataset, collate)
    reference_before = {k: v.clone() for k, v in policy.state_dict().items()}

    config = TrainConfig(lr=2e-3, max_steps=10, batch_size=4, log_every=5, schedule="constant")
    dpo = DPOConfig(beta=0.5, loss=loss, segment_weight=segment_weight)
    summary = train_dpo(tiny_model_dir, data, tmp_path / "run", dpo, config)
    assert summary["result"]["steps"] == 10

    aligned = ocelli.load(tmp_path / "run" / "final")
    after = preference_margins(aligned.model, dataset, collate)
    # IPO pulls the gap towards a target instead of pushing it without end: it moves less.
    assert after.mean() > before.mean() + 0.5, (before.mean(), after.mean())
    assert (after > before).float().mean() >= 0.6
    # The reference (here: the starting model on disk) is unchanged.
    reloaded, _ = load_model_and_processor(tiny_model_dir)
    for name, value in reloaded.state_dict().items():
        assert torch.equal(value, reference_before[name]), name
    assert isinstance(aligned.chat(pairs[0].image, pairs[0].prompt, max_new_tokens=4), str)


def test_cli_dpo_and_bad_input(tiny_model_dir, short_pairs, tmp_path, run_cli):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    args = ["align", "dpo", "--model", tiny_model_dir, "--data", short_pairs, "--out", out]
    code, stdout, err = run_cli(*args, "--max-steps", 1, "--batch-size", 2, "--loss", "ipo")
    assert code == 0, err
    assert "ipo on" in stdout and (out / "final" / "config.json").is_file()
    summary = json.loads((out / "align_summary.json").read_text())
    assert summary["dpo"]["loss"] == "ipo" and summary["result"]["steps"] == 1
    code, _, err = run_cli(*args[:-1], tmp_path / "other", "--beta", "0")
    assert code == 2 and "beta" in err
    code, _, err = run_cli(*args[:3], tmp_path, *args[4:-1], tmp_path / "x")
    assert code == 2 and "not a saved ocelli model" in err
