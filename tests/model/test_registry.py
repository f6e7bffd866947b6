import pytest
from torch import nn

from ocelli.errors import ConfigError, RegistryError
from ocelli.model import (
    CONNECTORS,
    Connector,
    OcelliConfig,
    language_model_preset,
    register_connector,
    vision_preset,
)

from .tiny import IMAGE_TOKEN_ID, LANGUAGE_MODELS, VISION


def config(vision="clip-tiny", connector="mlp", **kwargs):
    kwargs.setdefault("image_token_id", IMAGE_TOKEN_ID)
    return OcelliConfig(
        vision_config=vision_preset(vision, **VISION[vision]),
        text_config=language_model_preset("llama-tiny", **LANGUAGE_MODELS["llama-tiny"]),
        connector=connector,
        **kwargs,
    )


def test_unknown_connector_lists_registered_names():
    with pytest.raises(RegistryError) as error:
        config(connector="q-former")
    message = str(error.value)
    assert "'q-former'" in message and "linear" in message and "qformer" in message


def test_unknown_presets_and_encoder_types_list_the_known_ones():
    with pytest.raises(RegistryError, match="clip-tiny.*convnext-tiny.*siglip-tiny"):
        vision_preset("eva-tiny")
    with pytest.raises(RegistryError, match="llama-tiny, qwen2-moe-tiny, qwen2-tiny"):
        language_model_preset("gpt-tiny")
    with pytest.raises(RegistryError, match="clip_vision_model"):
        OcelliConfig(
            vision_config={"model_type": "vit"},
            text_config={"model_type": "llama"},
            image_token_id=IMAGE_TOKEN_ID,
        )


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(RegistryError, match="already registered"):
        register_connector("mlp")(type("Other", (Connector,), {}))


def test_a_new_connector_is_one_class_with_a_decorator(monkeypatch):
    monkeypatch.setattr(CONNECTORS, "_entries", dict(CONNECTORS._entries))

    @register_connector("pool2")
    class PoolConnector(Connector):
        """Averages pairs of tokens: half as many image tokens."""

        def __init__(self, vision_dim, text_dim, **options):
            super().__init__(vision_dim, text_dim, **options)
            self.linear = nn.Linear(vision_dim, text_dim)

        @classmethod
        def output_tokens(cls, num_input_tokens, options):
            return num_input_tokens // 2

    assert config(connector="pool2").num_image_tokens == 8  # 32px / 8px patches = 16 tokens
    assert "pool2" in CONNECTORS.names()


def test_widths_no_connector_can_bridge_fail_at_config_time(monkeypatch):
    monkeypatch.setattr(CONNECTORS, "_entries", dict(CONNECTORS._entries))

    @register_connector("identity")
    class IdentityConnector(Connector):
        @classmethod
        def check_dimensions(cls, vision_dim, text_dim, options):
            if vision_dim != text_dim:
                raise ConfigError(
                    f"identity connector needs equal widths, got {vision_dim} and {text_dim}"
                )

    with pytest.raises(ConfigError, match="32 and 64"):
        config(connector="identity")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vision_feature_layer": 3}, "out of range.*3 hidden states"),
        ({"vision_feature_layer": [-2, -1]}, "one int"),
        (
            {"connector_config": {"hiden_act": "relu"}},
            "unknown key.*hiden_act.*accepted keys: bias, hidden_act",
        ),
        ({"connector_config": {"hidden_act": "nope"}}, "not a known activation"),
        ({"image_token_id": 4000}, "below the language model's vocab_size 96"),
    ],
)
def test_config_errors_name_the_problem(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        config(**kwargs)


def test_keep_cls_needs_a_cls_token_and_vision_needs_an_encoder():
    with pytest.raises(ConfigError, match="siglip_vision_model has no CLS"):
        config("siglip-tiny", keep_cls=True)
    with pytest.raises(ConfigError, match="needs a vision encoder"):
        OcelliConfig(
            vision_config=None, text_config={"model_type": "llama"}, image_token_id=IMAGE_TOKEN_ID
        )
    with pytest.raises(ConfigError, match="not a causal language model"):
        OcelliConfig(
            vision_config={"model_type": "clip_vision_model"},
            text_config={"model_type": "vit"},
            image_token_id=IMAGE_TOKEN_ID,
        )


def test_preset_overrides_reject_misspelt_keys():
    with pytest.raises(ConfigError, match="hiden_size"):
        vision_preset("clip-tiny", hiden_size=32)


def test_num_image_tokens_follows_feature_selection():
    assert config().num_image_tokens == 16
    assert config(keep_cls=True).num_image_tokens == 17
    assert config("siglip-tiny").num_image_tokens == 16
    # 32px / 4px stem = 8x8 after the first stage, 4x4 after the second (last) one
    assert config("convnext-tiny", vision_feature_layer=-1).num_image_tokens == 16
    assert config("convnext-tiny", vision_feature_layer=1).num_image_tokens == 64


def test_config_round_trips_through_json(tmp_path):
    original = config(keep_cls=True, vision_feature_layer=-1)
    original.save_pretrained(tmp_path)
    loaded = OcelliConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == original.to_dict()
    assert loaded.num_image_tokens == 17
    assert loaded.connector_config == {"hidden_act": "gelu", "bias": True}
