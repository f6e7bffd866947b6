import json
import warnings

import pytest
import torch
from transformers import (
    AutoModelForImageTextToText,
    CLIPConfig,
    CLIPModel,
    LlamaForCausalLM,
    Qwen2ForCausalLM,
)

from ocelli.errors import CheckpointError, ConfigError, PromptError
from ocelli.model import (
    OcelliForConditionalGeneration,
    build_language_model,
    language_model_preset,
)

from .tiny import (
    CONNECTORS,
    ENCODER_FREE,
    IMAGE_TOKEN_ID,
    LANGUAGE_MODELS,
    VISION,
    images,
    left_pad,
    make_model,
    prompt,
)

COMBINATIONS = [
    (vision, lm, connector)
    for vision in VISION
    for lm in LANGUAGE_MODELS
    for connector in CONNECTORS
    if connector not in ENCODER_FREE
] + [(None, lm, connector) for lm in LANGUAGE_MODELS for connector in ENCODER_FREE]


@pytest.mark.parametrize("vision, language_model, connector", COMBINATIONS)
def test_every_combination_runs_forward_and_loss(vision, language_model, connector):
    model = make_model(vision, language_model, connector, vision_feature_layer=-1)
    ids, mask = left_pad(
        [prompt(model, [1, 8, 9]), prompt(model, [1, 10], num_images=2, suffix=[11, 12])]
    )
    labels = ids.masked_fill((ids == IMAGE_TOKEN_ID) | (mask == 0), -100)
    out = model(input_ids=ids, attention_mask=mask, pixel_values=images(3), labels=labels)
    assert out.logits.shape == (*ids.shape, model.config.text_config.vocab_size)
    assert out.image_hidden_states.shape == (
        3,
        model.config.num_image_tokens,
        model.config.text_config.hidden_size,
    )
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.connector.parameters().__next__().grad is not None


def test_a_training_forward_with_labels_builds_no_kv_cache():
    model = make_model().train()
    ids, mask = left_pad([prompt(model, [1, 8, 9]), prompt(model, [1, 10])])
    out = model(input_ids=ids, attention_mask=mask, pixel_values=images(2), labels=ids)
    assert out.past_key_values is None
    assert model.eval()(input_ids=ids, attention_mask=mask, pixel_values=images(2)).past_key_values


def test_loss_is_the_shifted_next_token_loss_ignoring_minus_100():
    model = make_model()
    ids = torch.tensor([prompt(model, [1, 8, 9], suffix=[10, 11, 12])])
    labels = ids.masked_fill(ids == IMAGE_TOKEN_ID, -100)
    out = model(input_ids=ids, pixel_values=images(1), labels=labels)
    expected = torch.nn.functional.cross_entropy(
        out.logits[0, :-1], labels[0, 1:], ignore_index=-100
    )
    torch.testing.assert_close(out.loss, expected)


def test_connector_standardizes_with_calibrated_statistics(tmp_path):
    model = make_model("siglip-tiny", "qwen2-tiny")
    connector = model.connector
    features = torch.randn(4, 16, connector.vision_dim) * 5 + 7
    connector.calibrate(features)
    standardized = connector.standardize(features).reshape(-1, connector.vision_dim)
    torch.testing.assert_close(
        standardized.mean(0), torch.zeros(connector.vision_dim), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        standardized.std(0), torch.ones(connector.vision_dim), atol=1e-4, rtol=0
    )
    model.save_pretrained(tmp_path)
    loaded = OcelliForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.equal(loaded.connector.feature_mean, connector.feature_mean)
    assert torch.equal(loaded.connector.feature_std, connector.feature_std)


def test_save_and_load_give_identical_logits(tmp_path):
    model = make_model("siglip-tiny", "qwen2-tiny")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    loaded = OcelliForConditionalGeneration.from_pretrained(tmp_path).eval()
    ids = torch.tensor([prompt(model, [1, 8])])
    with torch.no_grad():
        assert torch.equal(
            model(input_ids=ids, pixel_values=images(1)).logits,
            loaded(input_ids=ids, pixel_values=images(1)).logits,
        )
    # tied embeddings (Qwen2) stay tied after loading
    assert loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight
    auto = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert isinstance(auto, OcelliForConditionalGeneration)


def test_bad_checkpoint_directories_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        OcelliForConditionalGeneration.from_pretrained(tmp_path / "absent")
    make_model().save_pretrained(tmp_path / "no_weights")
    (tmp_path / "no_weights" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no weights"):
        OcelliForConditionalGeneration.from_pretrained(tmp_path / "no_weights")
    LlamaForCausalLM(
        language_model_preset("llama-tiny", **LANGUAGE_MODELS["llama-tiny"])
    ).save_pretrained(tmp_path / "llama")
    with pytest.raises(CheckpointError, match="holds a 'llama' model, not an ocelli model"):
        OcelliForConditionalGeneration.from_pretrained(tmp_path / "llama")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        OcelliForConditionalGeneration.from_pretrained(tmp_path / "empty")


def test_a_checkpoint_missing_weights_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    make_model().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("connector.")},
        tmp_path / "model.safetensors",
        metadata={"format": "pt"},
    )
    with pytest.raises(CheckpointError, match="lacks weights.*connector"):
        OcelliForConditionalGeneration.from_pretrained(tmp_path)


def test_placeholder_and_image_counts_must_match():
    model = make_model()
    ids = torch.tensor([prompt(model, [1, 8], num_images=2)])
    with pytest.raises(
        PromptError, match="32 image-token positions \\(2 placeholders of 16 tokens\\) but 1 image"
    ):
        model(input_ids=ids, pixel_values=images(1))
    with pytest.raises(PromptError, match="17 image-token positions"):
        model(input_ids=torch.cat([ids[:, :19], ids[:, -1:]], dim=1), pixel_values=images(1))
    with pytest.raises(PromptError, match="no pixel_values"):
        model(input_ids=ids)


def test_from_components_loads_weights_from_checkpoint_directories(tmp_path):
    torch.manual_seed(0)
    vision = {**VISION["clip-tiny"]}
    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "vocab_size": 50,
    }
    clip = CLIPModel(CLIPConfig(vision_config=vision, text_config=text))
    clip.save_pretrained(tmp_path / "clip")
    qwen = Qwen2ForCausalLM(language_model_preset("qwen2-tiny", **LANGUAGE_MODELS["qwen2-tiny"]))
    qwen.save_pretrained(tmp_path / "qwen2")
    model = OcelliForConditionalGeneration.from_components(
        tmp_path / "clip", str(tmp_path / "qwen2"), image_token_id=IMAGE_TOKEN_ID, vocab_size=100
    )
    assert torch.equal(
        model.vision_tower.model.encoder.layers[1].mlp.fc1.weight,
        clip.vision_model.encoder.layers[1].mlp.fc1.weight,
    )
    embeddings = model.get_input_embeddings().weight
    # grown to the tokenizer's size, the checkpoint's rows kept
    assert embeddings.shape[0] == 100 == model.config.text_config.vocab_size
    assert torch.equal(embeddings[:96], qwen.get_input_embeddings().weight)
    assert torch.equal(
        model.language_model.model.layers[0].self_attn.q_proj.weight,
        qwen.model.layers[0].self_attn.q_proj.weight,
    )
    model.save_pretrained(tmp_path / "joined")
    saved = json.loads((tmp_path / "joined" / "config.json").read_text())
    assert (
        saved["text_config"]["vocab_size"] == 100
        and saved["vision_config"]["model_type"] == "clip_vision_model"
    )


def test_from_components_refuses_a_vision_checkpoint_as_language_model(tmp_path):
    make_model().vision_tower.model.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="'clip_vision_model' is not a causal language model"):
        OcelliForConditionalGeneration.from_components(
            "clip-tiny", tmp_path, image_token_id=IMAGE_TOKEN_ID
        )
    with pytest.raises(CheckpointError, match="does not exist"):
        OcelliForConditionalGeneration.from_components(
            "clip-tiny", "./no/such/dir", image_token_id=IMAGE_TOKEN_ID
        )


def test_freeze_and_parameter_groups_cover_each_part_once():
    model = make_model()
    groups = model.parameter_groups()
    assert set(groups) == {"vision", "connector", "language_model"}
    all_ids = [id(p) for params in groups.values() for p in params]
    assert len(all_ids) == len(set(all_ids)) == len(list(model.parameters()))
    model.freeze(vision=True, language_model=True, connector=False)
    trainable = model.num_parameters_by_part(trainable_only=True)
    assert trainable["vision"] == trainable["language_model"] == 0
    assert (
        trainable["connector"]
        == model.num_parameters_by_part()["connector"]
        == 32 * 64 + 64 + 64 * 64 + 64
    )
    model.freeze(language_model=False)
    assert model.num_parameters_by_part(trainable_only=True)["language_model"] > 0
    assert model.num_parameters_by_part(trainable_only=True)["vision"] == 0


def test_gradient_checkpointing_and_sdpa_pass_through():
    model = make_model().train()
    assert model.language_model.config._attn_implementation == "sdpa"
    with warnings.catch_warnings():  # transformers 5 renamed it activation_checkpointing_enable
        warnings.simplefilter("ignore", FutureWarning)
        model.gradient_checkpointing_enable()
    assert model.language_model.model.gradient_checkpointing
    ids = torch.tensor([prompt(model, [1, 8])])
    model(
        input_ids=ids, pixel_values=images(1), labels=ids.masked_fill(ids == IMAGE_TOKEN_ID, -100)
    ).loss.backward()
    assert model.language_model.model.layers[0].mlp.up_proj.weight.grad is not None


def test_an_encoder_free_connector_reads_the_pixels(tmp_path):
    model = make_model(None, "llama-tiny", "patches")
    assert model.vision_tower is None and model.parameter_groups()["vision"] == []
    assert model.config.num_image_tokens == 16
    ids = torch.tensor([prompt(model, [1, 8])])
    model.save_pretrained(tmp_path)
    loaded = OcelliForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        expected = model(input_ids=ids, pixel_values=images(1)).logits
        assert torch.equal(loaded(input_ids=ids, pixel_values=images(1)).logits, expected)
        assert not torch.equal(
            model(input_ids=ids, pixel_values=images(1, seed=4)).logits, expected
        )


def test_language_models_are_sized_for_the_tokenizer(tmp_path):
    overrides = {k: v for k, v in LANGUAGE_MODELS["llama-tiny"].items() if k != "vocab_size"}
    new = build_language_model("llama-tiny", vocab_size=40, **overrides)
    assert new.get_input_embeddings().num_embeddings == 40  # a new LM matches the tokenizer
    new.save_pretrained(tmp_path)
    assert build_language_model(tmp_path, vocab_size=30).config.vocab_size == 40  # never shrinks
    grown = build_language_model(str(tmp_path), vocab_size=48)
    assert grown.get_output_embeddings().weight.shape[0] == 48 == grown.config.vocab_size
    assert torch.equal(grown.get_input_embeddings().weight[:40], new.get_input_embeddings().weight)
