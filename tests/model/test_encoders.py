import pytest
import torch
from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

from ocelli.errors import CheckpointError
from ocelli.model import (
    CLIPEncoder,
    ConvNextEncoder,
    SiglipEncoder,
    build_vision_encoder,
    load_vision_encoder,
    vision_preset,
)

from .tiny import VISION, images


@pytest.mark.parametrize(
    "name, feature_layer, keep_cls, tokens, width",
    [
        ("clip-tiny", -2, False, 16, 32),
        ("clip-tiny", -1, True, 17, 32),
        ("clip-tiny", 0, True, 17, 32),
        ("siglip-tiny", -2, False, 16, 48),
        ("convnext-tiny", -1, False, 16, 32),
        ("convnext-tiny", 0, False, 64, 16),  # the stem output, 32px / 4
        ("convnext-tiny", 1, False, 64, 16),
    ],
)
def test_token_count_and_width_from_config_match_the_forward_pass(
    name, feature_layer, keep_cls, tokens, width
):
    encoder = build_vision_encoder(vision_preset(name, **VISION[name]), feature_layer, keep_cls)
    assert (encoder.num_tokens, encoder.hidden_size, encoder.image_size) == (tokens, width, 32)
    with torch.no_grad():
        features = encoder.features(images(2))
    assert features.shape == (2, tokens, width)


def test_feature_layer_picks_that_hidden_state_and_drops_cls():
    encoder = build_vision_encoder(
        vision_preset("clip-tiny", **VISION["clip-tiny"]), -2, keep_cls=False
    )
    pixels = images(1)
    with torch.no_grad():
        hidden = encoder.model(pixels, output_hidden_states=True).hidden_states
        assert torch.equal(encoder(pixels), hidden[-2][:, 1:])


def test_image_statistics_follow_each_encoder_family():
    assert CLIPEncoder.image_mean[0] == pytest.approx(0.4815, abs=1e-4)
    assert SiglipEncoder.image_std == (0.5, 0.5, 0.5)
    assert ConvNextEncoder.image_mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize(
    "full_model, full_config, adapter",
    [(CLIPModel, CLIPConfig, CLIPEncoder), (SiglipModel, SiglipConfig, SiglipEncoder)],
)
def test_a_full_image_text_checkpoint_gives_its_vision_tower(
    tmp_path, full_model, full_config, adapter
):
    vision = {key: value for key, value in VISION["clip-tiny"].items()}
    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "vocab_size": 50,
    }
    saved = full_model(full_config(vision_config=vision, text_config=text))
    saved.save_pretrained(tmp_path)
    encoder = load_vision_encoder(tmp_path, feature_layer=-1)
    assert isinstance(encoder, adapter)
    loaded = encoder.model.embeddings.patch_embedding.weight
    assert torch.equal(loaded, saved.vision_model.embeddings.patch_embedding.weight)


def test_vision_checkpoint_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        load_vision_encoder(tmp_path / "absent")
    encoder = build_vision_encoder(vision_preset("siglip-tiny", **VISION["siglip-tiny"]))
    encoder.model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no weights"):
        load_vision_encoder(tmp_path)


def test_recipes_build_encoders_by_preset_name_and_reload_them(tmp_path):
    encoder = build_vision_encoder("convnext-tiny", feature_layer=-1, **VISION["convnext-tiny"])
    assert (encoder.grid_size, encoder.num_tokens) == (4, 16)
    processor = encoder.image_processor()
    assert processor.size == (32, 32) and processor.mean == ConvNextEncoder.image_mean
    encoder.save_pretrained(tmp_path)
    reloaded = build_vision_encoder(tmp_path, feature_layer=-1)
    with torch.no_grad():
        assert torch.equal(reloaded(images(1)), encoder(images(1)))
    clip = build_vision_encoder("clip-tiny", keep_cls=True, **VISION["clip-tiny"])
    assert (clip.grid_size, clip.num_tokens) == (4, 17)
