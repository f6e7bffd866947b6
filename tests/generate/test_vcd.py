"""Visual contrastive decoding: the formula by hand, equal to a step-by-step
computation on a tiny model, alpha=0 equal to greedy, the pipeline option, bad settings."""

import math

import pytest
import torch

from ocelli.errors import ConfigError, PromptError
from ocelli.generate.logits import (
    VCDConfig,
    VCDLogitsProcessor,
    contrastive_logits,
    diffusion_noise,
    vcd_generate,
)


def test_contrastive_logits_by_hand():
    original = torch.tensor([[2.0, 1.0, -3.0]])
    noised = torch.tensor([[2.5, 0.0, 0.0]])
    # p = softmax(original) = [0.7275, 0.2676, 0.0049]; beta=0.1 cuts the last (0.0049 <
    # 0.0728); contrasted = 2 * original - noised = [1.5, 2.0, -6.0] -> [1.5, 2.0, -inf]
    result = contrastive_logits(original, noised, alpha=1.0, beta=0.1)
    assert torch.allclose(result[0, :2], torch.tensor([1.5, 2.0]))
    assert result[0, 2] == float("-inf")
    # No cut-off at beta=0; a token ruled out before stays out, without nan.
    open_cut = contrastive_logits(original, noised, alpha=0.5, beta=0.0)
    assert torch.allclose(open_cut, 1.5 * original - 0.5 * noised)
    ruled_out = contrastive_logits(
        original, torch.tensor([[float("-inf"), 0.0, 0.0]]), alpha=1.0, beta=0.0
    )
    assert torch.isfinite(ruled_out).all()


def test_diffusion_noise_follows_the_linear_schedule():
    config = VCDConfig(noise_step=500)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    expected = math.sqrt(float(torch.prod(1 - betas[:501])))
    assert config.signal_level() == pytest.approx(expected)
    pixels = torch.ones(2, 3, 8, 8)
    noised = diffusion_noise(pixels, config)
    assert torch.equal(noised, diffusion_noise(pixels, config))  # seeded
    assert not torch.equal(noised, diffusion_noise(pixels, VCDConfig(seed=1)))
    residual = (noised - expected * pixels) / math.sqrt(1 - expected**2)
    assert abs(residual.mean()) < 0.2 and abs(residual.std() - 1) < 0.2


def _batch(pipeline, image_paths, prompts):
    conversations = [
        pipeline.conversation(path, p) for path, p in zip(image_paths, prompts, strict=True)
    ]
    return pipeline.processor(conversations, [[p] for p in image_paths], padding_side="left")


@torch.no_grad()
def test_equals_a_step_by_step_hand_computation(pipeline, image_paths):
    model, config, steps = pipeline.model, VCDConfig(alpha=1.0, beta=0.1, noise_step=300), 6
    batch = _batch(pipeline, image_paths[:2], ["What is this?", "How many cubes?"])
    noised = diffusion_noise(batch["pixel_values"], config)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    for _ in range(steps):  # no cache, no batching trick: two separate full forwards
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        original = model(**kwargs, pixel_values=batch["pixel_values"]).logits[:, -1]
        contrast = model(**kwargs, pixel_values=noised).logits[:, -1]
        token = contrastive_logits(original, contrast, config.alpha, config.beta).argmax(-1)
        ids = torch.cat([ids, token[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(token[:, None])], dim=1)
    generated = vcd_generate(
        model,
        dict(batch),
        config,
        max_new_tokens=steps,
        min_new_tokens=steps,
        do_sample=False,
        pad_token_id=pipeline.processor.pad_token_id,
    )
    assert torch.equal(generated, ids)
    plain = model.generate(**batch, max_new_tokens=steps, min_new_tokens=steps, do_sample=False)
    assert not torch.equal(plain, generated)  # the contrast changed something


@torch.no_grad()
def test_alpha_zero_is_greedy(pipeline, image_paths):
    prompts = ["What is this?", "How many cubes?", "Describe it."]
    greedy = pipeline.chat_batch([[p] for p in image_paths], prompts, max_new_tokens=12)
    vcd = pipeline.chat_batch(
        [[p] for p in image_paths], prompts, max_new_tokens=12, vcd=VCDConfig(alpha=0.0)
    )
    assert vcd == greedy


def test_pipeline_option_greedy_and_seeded_sampling(pipeline, image_paths):
    config = VCDConfig(alpha=1.0, beta=0.1)
    first = pipeline.chat(image_paths[0], "What is this?", max_new_tokens=8, vcd=config)
    assert first == pipeline.chat(image_paths[0], "What is this?", max_new_tokens=8, vcd=config)
    sampled = [
        pipeline.chat(
            image_paths[0], "What?", max_new_tokens=8, vcd=config, temperature=1.0, seed=3
        )
        for _ in range(2)
    ]
    assert sampled[0] == sampled[1]


def test_sampling_keeps_both_halves_in_step():
    processor = VCDLogitsProcessor(alpha=1.0, beta=0.0, sample=True)
    torch.manual_seed(0)
    scores = processor(torch.zeros(4, 1, dtype=torch.long), torch.randn(4, 50))
    chosen = scores.argmax(-1)
    assert torch.equal(chosen[:2], chosen[2:])
    assert (torch.isfinite(scores).sum(-1) == 1).all()


@pytest.mark.parametrize(
    "settings",
    [{"alpha": -1.0}, {"beta": 1.5}, {"noise_step": 1000}, {"beta_start": 0.5, "beta_end": 0.1}],
)
def test_bad_settings(settings):
    with pytest.raises(ConfigError, match="invalid VCD settings"):
        VCDConfig(**settings)


def test_needs_an_image_and_no_beams(pipeline, image_paths):
    with pytest.raises(PromptError, match="image"):
        pipeline.chat(None, "Hello?", vcd=VCDConfig())
    with pytest.raises(ConfigError, match="beam"):
        pipeline.chat(image_paths[0], "What?", vcd=VCDConfig(), num_beams=2)


def test_cost_benchmark_runs_and_writes_the_ratio(tmp_path, monkeypatch):
    import json
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "benchmarks"))
    sys.modules.pop("vcd_cost", None)
    import vcd_cost

    out = tmp_path / "vcd.json"
    settings = [
        "model.vision_overrides={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
        "intermediate_size: 64, image_size: 16, patch_size: 8}",
        "model.language_model_overrides={hidden_size: 32, num_hidden_layers: 1, vocab_size: 64}",
        "model.vocab_size=64",
        "batch_sizes=[1, 2]",
        "num_prompt_text_tokens=4",
        "max_new_tokens=3",
        "rounds=1",
    ]
    argv = ["--threads", "1", "--out", str(out), "--no-docs"]
    for setting in settings:
        argv += ["--set", setting]
    vcd_cost.main(argv)
    record = json.loads(out.read_text())
    for entry in record["results"]["by_batch_size"]:
        greedy, vcd = (entry["call_s"][side][0] for side in ("greedy", "vcd"))
        assert entry["ratio"] == pytest.approx(vcd / greedy)
