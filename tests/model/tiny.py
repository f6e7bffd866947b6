"""Tiny components shared by the model tests (hidden sizes 32-64, 32px images)."""

from __future__ import annotations

import torch

from ocelli.model import OcelliForConditionalGeneration

IMAGE_TOKEN_ID = 5
PAD_TOKEN_ID = 0
EOS_TOKEN_ID = 2
VOCAB_SIZE = 96

VISION = {
    "clip-tiny": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 32,
        "patch_size": 8,
    },
    "siglip-tiny": {
        "hidden_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 32,
        "patch_size": 8,
    },
    "convnext-tiny": {"hidden_sizes": [16, 32], "depths": [1, 1], "image_size": 32},
}
# A larger initializer_range than the default 0.02 so greedy decoding of a random model
# varies from token to token and batched-vs-single comparisons are not trivially equal.
LANGUAGE_MODELS = {
    "llama-tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 96,
        "vocab_size": VOCAB_SIZE,
        "initializer_range": 0.2,
    },
    "qwen2-tiny": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 64,
        "vocab_size": VOCAB_SIZE,
        "initializer_range": 0.2,
    },
}

# Kept apart from LANGUAGE_MODELS so the every-combination test stays dense-only.
MIXTURE_OF_EXPERTS = {
    "qwen2-moe-tiny": {
        **LANGUAGE_MODELS["qwen2-tiny"],
        "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 32,
    }
}

# Options small enough for the tiny components: every connector gives 4 tokens per
# 4x4 grid of features, except linear/mlp/visual-expert (16), patches (16 patches of a 32px image) and
# the feature-level xattn/adapter (1 placeholder per image).
CONNECTORS = {
    "linear": {},
    "mlp": {},
    "qformer": {"num_queries": 4, "num_layers": 1, "num_heads": 2},
    "perceiver": {"num_latents": 4, "num_layers": 1, "num_heads": 2},
    "pixel-shuffle": {"factor": 2},
    "c-abstractor": {"num_tokens": 4},
    "salient": {"num_tokens": 4},
    "patches": {"patch_size": 8, "image_size": 32},
    "xattn": {"num_latents": 4, "num_heads": 2},
    "adapter": {"prompt_length": 4},
    "visual-expert": {},
}
ENCODER_FREE = {"patches"}


def make_model(
    vision: str | None = "clip-tiny",
    language_model: str = "llama-tiny",
    connector: str = "mlp",
    seed: int = 0,
    **options,
) -> OcelliForConditionalGeneration:
    """A tiny model; `connector_config` defaults to CONNECTORS[connector], and an
    encoder-free connector gets no vision encoder."""
    torch.manual_seed(seed)
    if connector in ENCODER_FREE:
        vision = None
    options.setdefault("connector_config", CONNECTORS.get(connector))
    model = OcelliForConditionalGeneration.from_components(
        vision,
        language_model,
        connector,
        image_token_id=IMAGE_TOKEN_ID,
        pad_token_id=PAD_TOKEN_ID,
        vision_overrides=VISION[vision] if vision else None,
        language_model_overrides={**LANGUAGE_MODELS, **MIXTURE_OF_EXPERTS}[language_model],
        **options,
    )
    return model.eval()


def prompt(model, text_ids: list[int], num_images: int = 1, suffix: list[int] = (7,)) -> list[int]:
    """Text ids, then each image's placeholder expanded to num_image_tokens ids, then suffix."""
    image = [IMAGE_TOKEN_ID] * model.config.num_image_tokens
    return list(text_ids) + image * num_images + list(suffix)


def left_pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), PAD_TOKEN_ID, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, width - len(row) :] = torch.tensor(row)
        mask[index, width - len(row) :] = 1
    return ids, mask


def images(count: int, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def two_prompts(model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A left-padded batch: one image in the first row, two in the second; with pixels."""
    ids, mask = left_pad([prompt(model, [1, 8, 9]), prompt(model, [1], num_images=2)])
    return ids, mask, images(3)


def logits_of_the_lm_alone(model, ids, mask, image_hidden_states) -> torch.Tensor:
    """Logits of a hook-free copy of the model's LM on the embeddings the model gave it."""
    from transformers import AutoModelForCausalLM

    embeds = model.merge_image_features(ids, model.get_input_embeddings()(ids), image_hidden_states)
    plain = AutoModelForCausalLM.from_config(model.language_model.config)
    plain.load_state_dict(model.language_model.state_dict())
    with torch.no_grad():
        return plain.eval()(inputs_embeds=embeds, attention_mask=mask).logits
