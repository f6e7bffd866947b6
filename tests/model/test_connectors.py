"""The registered connectors beyond linear/mlp: token counts, option errors, save/load,
generation and a few training steps (forward/loss/backward for every encoder and LM is
in test_modeling's combination test)."""

import pytest
import torch

from ocelli.errors import ConfigError, ImageError
from ocelli.model import (
    CONNECTORS,
    OcelliConfig,
    OcelliForConditionalGeneration,
    language_model_preset,
    vision_preset,
)

from .tiny import (
    CONNECTORS as TINY_OPTIONS,
)
from .tiny import (
    EOS_TOKEN_ID,
    IMAGE_TOKEN_ID,
    LANGUAGE_MODELS,
    PAD_TOKEN_ID,
    VISION,
    images,
    left_pad,
    make_model,
    prompt,
)

NEW_CONNECTORS = [
    "qformer",
    "perceiver",
    "pixel-shuffle",
    "c-abstractor",
    "salient",
    "patches",
    "xattn",
    "adapter",
    "visual-expert",
]


@pytest.mark.parametrize(
    "connector, options, expected",
    [
        ("qformer", {"num_queries": 7, "num_layers": 1, "num_heads": 2}, 7),
        ("perceiver", {"num_latents": 5, "num_layers": 1, "num_heads": 2}, 5),
        ("pixel-shuffle", {"factor": 2}, 4),
        ("pixel-shuffle", {"factor": 4}, 1),
        ("c-abstractor", {"num_tokens": 9}, 9),
        ("salient", {"num_tokens": 5, "window": 1}, 5),
        ("patches", {"patch_size": 4, "image_size": 32}, 64),
    ],
)
def test_output_token_counts(connector, options, expected):
    model = make_model("clip-tiny", "qwen2-tiny", connector, connector_config=options)
    assert model.config.num_image_tokens == expected
    ids = torch.tensor([prompt(model, [1, 8])])
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=images(1))
    assert out.image_hidden_states.shape == (1, expected, 32)


@pytest.mark.parametrize("connector", NEW_CONNECTORS)
def test_unknown_options_name_the_accepted_keys(connector):
    accepted = ", ".join(sorted(CONNECTORS.get(connector).default_options))
    with pytest.raises(ConfigError, match=f"unknown key\\(s\\) bogus .*accepted keys: {accepted}"):
        make_model("clip-tiny", "llama-tiny", connector, connector_config={"bogus": 1})


@pytest.mark.parametrize(
    "vision_overrides, connector, options, message",
    [
        ({"image_size": 24}, "pixel-shuffle", {"factor": 2}, "3x3 grid .* not divisible by"),
        ({}, "pixel-shuffle", {"factor": 0}, "factor must be a positive integer"),
        ({}, "c-abstractor", {"num_tokens": 5}, "5 is not a square number"),
        ({}, "c-abstractor", {"num_tokens": 25}, "more than the encoder's 16"),
        ({}, "salient", {"num_tokens": 17}, "more than the encoder's 16"),
        ({}, "salient", {"window": 2}, "window must be odd"),
        ({}, "qformer", {"num_heads": 5}, "width 64 is not divisible by .*num_heads 5"),
        ({}, "perceiver", {"num_latents": "many"}, "num_latents must be a positive integer"),
        (None, "patches", {"image_size": 30}, "image_size 30 is not a multiple of patch_size 8"),
    ],
)
def test_bad_options_fail_when_the_config_is_built(vision_overrides, connector, options, message):
    """vision_overrides None: no vision encoder (encoder-free connectors)."""
    vision = None
    if vision_overrides is not None:
        vision = vision_preset("clip-tiny", **{**VISION["clip-tiny"], **vision_overrides})
    with pytest.raises(ConfigError, match=message):
        OcelliConfig(
            vision_config=vision,
            text_config=language_model_preset("llama-tiny", **LANGUAGE_MODELS["llama-tiny"]),
            connector=connector,
            connector_config=options,
            image_token_id=IMAGE_TOKEN_ID,
        )


@pytest.mark.parametrize("connector", ["pixel-shuffle", "c-abstractor", "salient"])
def test_grid_connectors_refuse_the_cls_token(connector):
    with pytest.raises(ConfigError, match="square grid .* 17 per image; set keep_cls false"):
        make_model("clip-tiny", "llama-tiny", connector, keep_cls=True)


def test_patches_take_no_vision_encoder_and_calibrate_on_patches():
    with pytest.raises(ConfigError, match="reads the pixels itself .* pass vision=None"):
        OcelliForConditionalGeneration.from_components(
            "clip-tiny", "llama-tiny", "patches", image_token_id=IMAGE_TOKEN_ID
        )
    model = make_model(None, "llama-tiny", "patches")
    pixel_values = images(4) * 2 + 1
    model.connector.calibrate(model.get_vision_features(pixel_values))
    standardized = model.connector.standardize(model.connector.patchify(pixel_values))
    torch.testing.assert_close(standardized.mean((0, 1)), torch.zeros(192), atol=1e-5, rtol=0)


def test_patches_refuse_images_of_another_size():
    model = make_model(None, "llama-tiny", "patches")
    ids = torch.tensor([prompt(model, [1])])
    with pytest.raises(ImageError, match=r"\(num_images, 3, 32, 32\), got \(1, 3, 48, 48\)"):
        model(input_ids=ids, pixel_values=images(1, size=48))


@pytest.mark.parametrize("connector", NEW_CONNECTORS)
def test_save_and_load_give_identical_logits(connector, tmp_path):
    model = make_model("siglip-tiny", "qwen2-tiny", connector)
    model.connector.calibrate(model.get_vision_features(images(4, seed=7) * 2 + 1))
    model.save_pretrained(tmp_path)
    loaded = OcelliForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.connector_config == model.config.connector_config
    ids = torch.tensor([prompt(model, [1, 8])])
    with torch.no_grad():
        expected = model(input_ids=ids, pixel_values=images(1)).logits
        assert torch.equal(loaded(input_ids=ids, pixel_values=images(1)).logits, expected)


@pytest.mark.parametrize("connector", NEW_CONNECTORS)
def test_generation_starts_from_the_forward_pass(connector):
    model = make_model("clip-tiny", "llama-tiny", connector)
    ids, mask = left_pad([prompt(model, [1, 8, 9]), prompt(model, [1], num_images=2)])
    pixel_values = images(3)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values).logits
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            pixel_values=pixel_values,
            max_new_tokens=3,
            do_sample=False,
            pad_token_id=PAD_TOKEN_ID,
            eos_token_id=EOS_TOKEN_ID,
        )
    assert out.shape[0] == 2 and out.shape[1] > ids.shape[1]
    assert torch.equal(out[:, ids.shape[1]], logits[:, -1].argmax(-1))


@pytest.mark.parametrize("connector", NEW_CONNECTORS)
def test_a_few_connector_steps_lower_the_loss_with_the_lm_frozen(connector):
    model = make_model("clip-tiny", "llama-tiny", connector).train()
    model.freeze(vision=True, language_model=True, connector=False)
    ids = torch.tensor([prompt(model, [1, 8], suffix=[9, 10, 11, 12])] * 2)
    labels = ids.masked_fill(ids == IMAGE_TOKEN_ID, -100)
    pixel_values = images(2)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model(input_ids=ids, pixel_values=pixel_values, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_tiny_options_cover_every_registered_connector():
    assert set(TINY_OPTIONS) == set(CONNECTORS.names())


def test_salient_keeps_the_peaks_in_raster_order_with_their_places():
    connector = CONNECTORS.get("salient")(4, 8, num_tokens=2)
    features = torch.zeros(1, 16, 4)
    features[0, 5] = 5.0  # a peak at (1, 1), and a weaker neighbour that is no peak
    features[0, 6] = 4.0
    features[0, 15] = 3.0  # a peak at (3, 3)
    kept = connector.select(connector.standardize(features))
    # the neighbour is more salient than the second peak but is not kept
    assert kept.tolist() == [[5, 15]]
    # the same content at another place gives another token (the place is embedded)
    moved = torch.zeros(1, 16, 4)
    moved[0, 0] = 5.0
    moved[0, 1] = 4.0
    moved[0, 15] = 3.0
    with torch.no_grad():
        assert not torch.allclose(connector(features)[0, 0], connector(moved)[0, 0])
