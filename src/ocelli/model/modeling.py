"""`OcelliForConditionalGeneration`: vision encoder -> connector -> language model.

The forward pass reads top to bottom: the images become features, the connector maps
them to the LM's embedding width, they replace the embeddings at the positions where
`input_ids == image_token_id`, and the (unchanged) Hugging Face causal LM does the rest,
including its loss, KV cache and generation.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForImageTextToText, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils.generic import can_return_tuple

from ocelli.errors import CheckpointError, ConfigError, PromptError
from ocelli.model.anyres import AnyResLayout
from ocelli.model.checkpoints import load_checked, read_config
from ocelli.model.configuration import OcelliConfig
from ocelli.model.connectors.base import Connector
from ocelli.model.encoders import (
    VisionEncoder,
    build_vision_encoder,
    load_vision_encoder,
    vision_adapter,
)
from ocelli.model.language_models import (
    build_language_model,
    language_model_config,
    load_language_model,
)
from ocelli.model.last_layer import last_layer_at
from ocelli.model.packed_attention import attends_per_sample, packed_attention
from ocelli.model.presets import ComponentSpec, resolve_component
from ocelli.model.registry import CONNECTORS, LANGUAGE_MODELS, VISION_ENCODERS

IGNORE_INDEX = -100  # label of positions without loss (PyTorch's cross_entropy default)


@dataclass
class OcelliCausalLMOutput(CausalLMOutputWithPast):
    """The LM's output plus the connector's image features (num_images, tokens, text_dim)
    and, for a mixture-of-experts LM, its router load-balancing loss and router logits."""

    image_hidden_states: torch.FloatTensor | None = None
    aux_loss: torch.FloatTensor | None = None
    router_logits: tuple[torch.FloatTensor, ...] | None = None


class OcelliPreTrainedModel(PreTrainedModel):
    config_class = OcelliConfig
    config: OcelliConfig
    base_model_prefix = ""
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _skip_keys_device_placement = ["past_key_values"]


class OcelliForConditionalGeneration(OcelliPreTrainedModel, GenerationMixin):
    def __init__(
        self,
        config: OcelliConfig,
        vision_tower: VisionEncoder | None = None,
        language_model: PreTrainedModel | None = None,
    ) -> None:
        """Build every part from `config`, or take already-loaded `vision_tower` and
        `language_model` (what `from_components` does with checkpoint directories)."""
        super().__init__(config)
        if vision_tower is None and config.vision_config is not None:
            vision_tower = build_vision_encoder(
                config.vision_config, config.vision_feature_layer, config.keep_cls
            )
        self.vision_tower = vision_tower
        self.connector = CONNECTORS.get(config.connector)(
            config.vision_hidden_size, config.text_config.hidden_size, **config.connector_config
        )
        self.anyres = None
        if config.anyres is not None:
            self.anyres = AnyResLayout(
                config.anyres, config.vision_config.image_size, config.text_config.hidden_size
            )
        if language_model is None:
            language_model = build_language_model(config.text_config)
        self.language_model = language_model
        # One config object per part, shared with the part itself, so a resize or an
        # attention switch on the LM is what gets saved.
        config.text_config = self.language_model.config
        if self.vision_tower is not None:
            config.vision_config = self.vision_tower.config
        self.post_init()
        # Connectors acting inside the LM hook its layers (and may copy its weights, so
        # this comes after post_init has initialised them).
        self.connector.attach(self.language_model)

    # -- building from parts -----------------------------------------------------------
    @classmethod
    def from_components(
        cls,
        vision: ComponentSpec | None,
        language_model: ComponentSpec,
        connector: str = "mlp",
        *,
        image_token_id: int,
        vocab_size: int | None = None,
        pad_token_id: int | None = None,
        connector_config: dict[str, Any] | None = None,
        vision_overrides: dict[str, Any] | None = None,
        language_model_overrides: dict[str, Any] | None = None,
        vision_feature_layer: int = -2,
        keep_cls: bool = False,
        anyres: dict[str, Any] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> OcelliForConditionalGeneration:
        """Join a vision encoder and a language model with a new connector.

        `vision` and `language_model` are each a preset name ("clip-tiny", "qwen2-tiny"),
        a config (dict with model_type, or PretrainedConfig) or a local checkpoint
        directory, whose weights are loaded (a full CLIPModel/SiglipModel directory gives
        its vision tower); `vision` is None only for encoder-free connectors. `anyres`
        tiles high-resolution images (see anyres.py). `vocab_size` is the tokenizer's length: a pretrained LM's
        embeddings grow to it when smaller, a new LM gets exactly that many. The config is
        checked before any weights are loaded.
        """
        vision_part = None
        if vision is not None:
            vision_part = resolve_component(
                vision, VISION_ENCODERS, "vision encoder", vision_overrides
            )
            vision_part.config = vision_adapter(vision_part.config).vision_part(vision_part.config)
        text_part = resolve_component(
            language_model, LANGUAGE_MODELS, "language model", language_model_overrides
        )
        config = OcelliConfig(
            vision_config=vision_part.config if vision_part else None,
            text_config=language_model_config(text_part, vocab_size),
            connector=connector,
            connector_config=connector_config,
            vision_feature_layer=vision_feature_layer,
            keep_cls=keep_cls,
            image_token_id=image_token_id,
            pad_token_id=pad_token_id,
            anyres=anyres,
        )
        # Checked above before any weights are read; now load what comes from directories.
        vision_tower = loaded_lm = None
        if vision_part is not None and vision_part.checkpoint is not None:
            vision_tower = load_vision_encoder(
                vision_part.checkpoint, vision_feature_layer, keep_cls
            )
        if text_part.checkpoint is not None:
            loaded_lm = load_language_model(text_part.checkpoint, vocab_size)
        model = cls(config, vision_tower=vision_tower, language_model=loaded_lm)
        if pad_token_id is not None:
            model.generation_config.pad_token_id = pad_token_id
        return model.to(dtype)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | Path, *model_args: Any, **kwargs: Any
    ) -> OcelliForConditionalGeneration:
        """Load a directory written by `save_pretrained` (safetensors only, no remote code)."""
        path = pretrained_model_name_or_path
        model_type = read_config(path, "ocelli model")["model_type"]
        if model_type != OcelliConfig.model_type:
            raise CheckpointError(
                f"{path} holds a {model_type!r} model, not an ocelli model; a language model or "
                "vision encoder directory goes to OcelliForConditionalGeneration.from_components()"
            )
        return load_checked(super().from_pretrained, path, "ocelli model", *model_args, **kwargs)

    # -- embeddings (delegated to the LM so resize_token_embeddings works) -------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    # -- forward -----------------------------------------------------------------------
    def get_vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(num_images, 3, H, W) -> the vision tower's selected features, before the
        connector: (num_images, N, D), or with AnyRes (num_images, crop slots, N, D), NaN
        in the slots of tiles an image's grid does not use."""
        if self.vision_tower is None:
            return pixel_values
        if self.anyres is None:
            return self.vision_tower(pixel_values)
        crops, present = self.anyres.crops(pixel_values)
        encoded = self.vision_tower(crops[present])
        features = encoded.new_full((*present.shape, *encoded.shape[1:]), float("nan"))
        features[present] = encoded
        return features

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(num_images, 3, H, W) -> (num_images, num_image_tokens, text hidden size), or
        with AnyRes every image's tokens one after the other: (total image tokens, hidden)."""
        return self.image_features_from(self.get_vision_features(pixel_values))

    def image_features_from(self, vision_features: torch.Tensor) -> torch.Tensor:
        """The connector's output for vision features (see get_image_features)."""
        if self.anyres is None:
            return self.connector(vision_features)
        present = self.anyres.present_slots(vision_features)
        return self.anyres.arrange(self.connector(vision_features[present]), present)

    def image_token_counts(self, pixel_values: torch.Tensor) -> list[int]:
        """Image-token positions each image fills in input_ids."""
        if self.anyres is None:
            return [self.config.num_image_tokens] * len(pixel_values)
        _, present = self.anyres.crops(pixel_values)
        return self.anyres.num_tokens(present, self.config.num_image_tokens)

    def merge_image_features(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor,
        image_features: torch.Tensor,
    ) -> torch.Tensor:
        """Write image features, in order, over the embeddings of the image-token positions."""
        if input_ids is None:
            raise PromptError(
                "pixel_values were given with inputs_embeds only; pass input_ids so the "
                "image-token positions can be found"
            )
        is_image = input_ids == self.config.image_token_id
        num_positions = int(is_image.sum())
        if image_features.ndim == 2 and num_positions != len(image_features):  # AnyRes
            raise PromptError(
                f"input_ids hold {num_positions} image-token positions but the images' AnyRes "
                f"grids give {len(image_features)} image tokens; expand each <image> placeholder "
                "by its image's grid (OcelliProcessor does when given the images or their sizes)"
            )
        if image_features.ndim == 3:
            num_images, tokens_per_image = image_features.shape[:2]
            if num_positions != num_images * tokens_per_image:
                raise PromptError(
                    f"input_ids hold {num_positions} image-token positions ({num_positions / tokens_per_image:g} "
                    f"placeholders of {tokens_per_image} tokens) but {num_images} image(s) were given, "
                    f"which need {num_images * tokens_per_image}; give one image per <image> placeholder "
                    f"and expand each placeholder to {tokens_per_image} image tokens (OcelliProcessor does)"
                )
        return inputs_embeds.masked_scatter(
            is_image.unsqueeze(-1), image_features.to(inputs_embeds.dtype)
        )

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        vision_features: torch.FloatTensor | None = None,
        **kwargs: Any,
    ) -> OcelliCausalLMOutput:
        """`labels` use -100 for positions without loss; the LM shifts them itself.

        `vision_features` (the vision tower's output for each image) may replace
        `pixel_values` while the tower is frozen: training stages compute them once per
        image instead of once per step.

        Packed rows (`position_ids` restarting per sample, no attention_mask, use_cache
        False; ocelli.data.packing) attend one sample at a time when the LM uses sdpa
        (ocelli.model.packed_attention), and with `labels` the LM head and loss run only
        at the positions that have a label: the same loss, and `logits` holds those
        positions only, flattened to (num_labelled, vocab); most of the last decoder
        layer runs only there too, where that is exact (ocelli.model.last_layer). A
        forward in training mode with labels builds no KV cache unless `use_cache=True`
        asks for one."""
        if (input_ids is None) == (inputs_embeds is None):
            raise PromptError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        self._check_connector_is_hooked()
        image_features = None
        if pixel_values is not None or vision_features is not None:
            if vision_features is None:
                vision_features = self.get_vision_features(pixel_values)
            image_features = self.image_features_from(vision_features)
            inputs_embeds = self.merge_image_features(input_ids, inputs_embeds, image_features)
            self.connector.bind_images(input_ids == self.config.image_token_id)
        elif _is_prefill(past_key_values):
            if input_ids is not None:
                self._check_no_placeholders(input_ids)
            self.connector.bind_images(None)  # no images left over from an earlier batch
        if labels is None and getattr(self.language_model.config, "output_router_logits", False):
            # A mixture-of-experts LM's router loss only matters for training, and
            # transformers' version fails on cached decoding with an attention mask.
            kwargs.setdefault("output_router_logits", False)
        if use_cache is None and labels is not None and self.training:
            use_cache = False  # a training step reads no KV cache; building one only costs
        packed = self._attends_per_sample(attention_mask, position_ids, past_key_values, use_cache)
        read_positions = None
        if packed and labels is not None and _keeps_all_logits(logits_to_keep):
            # the vocabulary projection (and the last layer) only where a label reads
            # it: the same loss
            logits_to_keep, kwargs["shift_labels"] = labelled_positions(labels)
            read_positions = logits_to_keep
        attention = (
            packed_attention(self.language_model, position_ids) if packed else nullcontext({})
        )
        last_layer = last_layer_at(self.language_model, read_positions, kwargs)
        with attention as attention_kwargs, last_layer:
            outputs = self.language_model(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                labels=labels,
                use_cache=use_cache,
                logits_to_keep=logits_to_keep,
                return_dict=True,
                **kwargs,
                **attention_kwargs,
            )
        return OcelliCausalLMOutput(
            loss=outputs.loss,
            logits=outputs.logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=image_features,
            # mixture-of-experts LMs with output_router_logits: their loss already
            # includes router_aux_loss_coef * aux_loss
            aux_loss=getattr(outputs, "aux_loss", None),
            router_logits=getattr(outputs, "router_logits", None),
        )

    def _attends_per_sample(
        self,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        past_key_values: Cache | None,
        use_cache: bool | None,
    ) -> bool:
        """Packed rows (what transformers reads as packed: position ids, no mask, no
        cache) for an LM that packed_attention keeps exact."""
        return (
            position_ids is not None
            and attention_mask is None
            and past_key_values is None
            and use_cache is False
            and attends_per_sample(self.language_model)
        )

    def _check_connector_is_hooked(self) -> None:
        # LoRA's modules_to_save=["connector"] swaps in a wrapper around a trained copy;
        # the LM's hooks would keep calling the original and silently ignore the copy.
        if self.connector.acts_inside_language_model and not isinstance(self.connector, Connector):
            raise ConfigError(
                f"connector {self.config.connector!r} acts through hooks on the language "
                "model's layers, so it cannot be wrapped (LoRA modules_to_save=['connector'] "
                "trains a copy those hooks never call); leave it out of modules_to_save and "
                "unfreeze it with model.connector.requires_grad_(True)"
            )

    def _check_no_placeholders(self, input_ids: torch.Tensor) -> None:
        num_positions = int((input_ids == self.config.image_token_id).sum())
        if num_positions:
            raise PromptError(
                f"input_ids hold {num_positions} image-token positions but no pixel_values were "
                "given; pass the images or remove the <image> placeholders"
            )

    # -- generation --------------------------------------------------------------------
    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        *args: Any,
        past_key_values: Cache | None = None,
        pixel_values: torch.FloatTensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        model_inputs = super().prepare_inputs_for_generation(
            input_ids,
            *args,
            past_key_values=past_key_values,
            is_first_iteration=is_first_iteration,
            **kwargs,
        )
        # Images enter the sequence once, at prefill; later steps read them from the KV
        # cache. Without a cache every step re-reads the whole prompt, images included.
        # (An empty cache also marks the prefill for transformers versions before the
        # `is_first_iteration` flag.)
        prefill = is_first_iteration or _is_prefill(past_key_values)
        if prefill or not kwargs.get("use_cache", True):
            model_inputs["pixel_values"] = pixel_values
        return model_inputs

    def _expand_inputs_for_generation(
        self,
        expand_size: int = 1,
        is_encoder_decoder: bool = False,
        input_ids: torch.LongTensor | None = None,
        **model_kwargs: Any,
    ) -> tuple[torch.LongTensor, dict[str, Any]]:
        # Beam search and num_return_sequences copy every row; pixel_values must be copied
        # per sample (all of a sample's images together), not image by image.
        pixel_values = model_kwargs.pop("pixel_values", None)
        if pixel_values is not None and expand_size > 1:
            pixel_values = self._expand_images(input_ids, pixel_values, expand_size)
        expanded_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size=expand_size,
            is_encoder_decoder=is_encoder_decoder,
            input_ids=input_ids,
            **model_kwargs,
        )
        model_kwargs["pixel_values"] = pixel_values
        return expanded_ids, model_kwargs

    def _expand_images(
        self, input_ids: torch.LongTensor | None, pixel_values: torch.Tensor, expand_size: int
    ) -> torch.Tensor:
        if input_ids is None:
            return pixel_values.repeat_interleave(expand_size, dim=0)
        positions = (input_ids == self.config.image_token_id).sum(dim=1).tolist()
        images_per_sample = _images_per_sample(positions, self.image_token_counts(pixel_values))
        if images_per_sample is None:
            return pixel_values  # the forward pass reports the mismatch
        chunks = torch.split(pixel_values, images_per_sample)
        return torch.cat([chunk for chunk in chunks for _ in range(expand_size)])

    # -- parts: freezing, learning-rate groups, sizes --------------------------------
    def parts(self) -> dict[str, nn.Module | None]:
        # AnyRes's newline embedding belongs to the interface and trains with the connector
        connector = (
            self.connector if self.anyres is None else nn.ModuleList([self.connector, self.anyres])
        )
        return {
            "vision": self.vision_tower,
            "connector": connector,
            "language_model": self.language_model,
        }

    def freeze(
        self,
        *,
        vision: bool | None = None,
        language_model: bool | None = None,
        connector: bool | None = None,
    ) -> None:
        """True freezes a part, False makes it trainable, None leaves it as it is."""
        wanted = {"vision": vision, "connector": connector, "language_model": language_model}
        for name, module in self.parts().items():
            if module is not None and wanted[name] is not None:
                module.requires_grad_(not wanted[name])

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per part ("vision", "connector", "language_model"), for per-part
        learning rates; a part without modules (encoder-free) has an empty list."""
        return {
            name: list(module.parameters()) if module is not None else []
            for name, module in self.parts().items()
        }

    def num_parameters_by_part(self, trainable_only: bool = False) -> dict[str, int]:
        return {
            name: sum(p.numel() for p in params if p.requires_grad or not trainable_only)
            for name, params in self.parameter_groups().items()
        }


def _images_per_sample(positions: list[int], counts: list[int]) -> list[int] | None:
    """How many of the images (in order, `counts` tokens each) each row's image-token
    positions take; None when they do not add up."""
    result, image = [], 0
    for row_positions in positions:
        taken = 0
        while row_positions > 0 and image < len(counts):
            row_positions -= counts[image]
            image, taken = image + 1, taken + 1
        if row_positions != 0:
            return None
        result.append(taken)
    return result if image == len(counts) else None


def labelled_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the LM's logits meet a label, and those labels: position t predicts
    labels[t + 1], so (positions as a boolean mask, shifted labels) for `logits_to_keep`
    and the LM loss's `shift_labels`. The loss (mean over labelled tokens) is unchanged."""
    has_label = labels[:, 1:] != IGNORE_INDEX
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = has_label
    return keep, labels[:, 1:][has_label]


def _keeps_all_logits(logits_to_keep: int | torch.Tensor) -> bool:
    return isinstance(logits_to_keep, int) and logits_to_keep == 0


def _is_prefill(past_key_values: Cache | None) -> bool:
    return past_key_values is None or past_key_values.get_seq_length() == 0


AutoModelForImageTextToText.register(OcelliConfig, OcelliForConditionalGeneration, exist_ok=True)
