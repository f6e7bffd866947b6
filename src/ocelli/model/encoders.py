"""Vision encoders: adapters around Hugging Face vision models.

An adapter owns one HF model (`.model`) and turns pixels (B, 3, H, W) into a sequence
of features (B, N, D) the connector consumes. Which features is decided by two knobs
that LLaVA made standard:

- `feature_layer`: which hidden state to read (-2 = the penultimate transformer layer,
  LLaVA's choice; for ConvNeXt an index into the stage outputs, -1 = last stage);
- `keep_cls`: keep CLIP's CLS token or drop it (SigLIP and ConvNeXt have none).

Everything a config needs (feature width, token count, image size) is computed from the
HF config alone, so an `OcelliConfig` can be checked before any weights exist.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from transformers import (
    CLIPVisionModel,
    ConvNextModel,
    PretrainedConfig,
    PreTrainedModel,
    SiglipVisionModel,
)

from ocelli.errors import ConfigError
from ocelli.model.checkpoints import load_checked, read_config
from ocelli.model.presets import ComponentSpec, resolve_component
from ocelli.model.registry import VISION_ADAPTERS, VISION_ENCODERS, register_vision_adapter

if TYPE_CHECKING:
    from ocelli.data.images import ImageProcessor

Triple = tuple[float, float, float]
OPENAI_CLIP_MEAN: Triple = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD: Triple = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_STD: Triple = (0.229, 0.224, 0.225)


class VisionEncoder(nn.Module):
    """Base adapter. Subclasses name the HF model class and say how features are read."""

    model_class: ClassVar[type[PreTrainedModel]]
    composite_model_types: ClassVar[tuple[str, ...]] = ()  # full checkpoints (CLIPModel)
    has_cls: ClassVar[bool] = False
    image_mean: ClassVar[Triple] = (0.5, 0.5, 0.5)
    image_std: ClassVar[Triple] = (0.5, 0.5, 0.5)

    def __init__(
        self, model: PreTrainedModel, feature_layer: int = -2, keep_cls: bool = False
    ) -> None:
        super().__init__()
        self.check(model.config, feature_layer, keep_cls)
        self.model = model
        self.feature_layer = feature_layer
        self.keep_cls = keep_cls

    # -- facts from the config alone ---------------------------------------------------
    @classmethod
    def vision_part(cls, config: PretrainedConfig) -> PretrainedConfig:
        """The vision config inside a full image-text config (CLIPConfig -> its vision part)."""
        if config.model_type in cls.composite_model_types:
            return config.vision_config
        return config

    @classmethod
    def num_hidden_states(cls, config: PretrainedConfig) -> int:
        raise NotImplementedError

    @classmethod
    def check(cls, config: PretrainedConfig, feature_layer: int, keep_cls: bool) -> None:
        count = cls.num_hidden_states(config)
        if isinstance(feature_layer, bool) or not isinstance(feature_layer, int):
            raise ConfigError(f"vision_feature_layer must be one int, got {feature_layer!r}")
        if not -count <= feature_layer < count:
            raise ConfigError(
                f"vision_feature_layer {feature_layer} is out of range for this {config.model_type} "
                f"encoder, which has {count} hidden states; use {-count}..{count - 1} (-1 = last)"
            )
        if keep_cls and not cls.has_cls:
            raise ConfigError(
                f"keep_cls is true but {config.model_type} has no CLS token; set keep_cls false"
            )

    @classmethod
    def feature_size(cls, config: PretrainedConfig, feature_layer: int) -> int:
        return config.hidden_size

    @classmethod
    def count_tokens(cls, config: PretrainedConfig, feature_layer: int, keep_cls: bool) -> int:
        raise NotImplementedError

    # -- building ----------------------------------------------------------------------
    @classmethod
    def from_config(
        cls, config: PretrainedConfig, feature_layer: int = -2, keep_cls: bool = False
    ) -> VisionEncoder:
        """A randomly initialised encoder."""
        return cls(cls.model_class(cls.vision_part(config)), feature_layer, keep_cls)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, feature_layer: int = -2, keep_cls: bool = False
    ) -> VisionEncoder:
        """Load from a local directory; a full CLIPModel/SiglipModel checkpoint gives its
        vision part (the text tower's weights are skipped)."""
        model = load_checked(cls.model_class.from_pretrained, path, "vision encoder")
        return cls(model, feature_layer, keep_cls)

    # -- what the rest of ocelli reads -------------------------------------------------
    @property
    def config(self) -> PretrainedConfig:
        return self.model.config

    @property
    def hidden_size(self) -> int:
        """Width of each output feature."""
        return self.feature_size(self.config, self.feature_layer)

    @property
    def num_tokens(self) -> int:
        """Features per image."""
        return self.count_tokens(self.config, self.feature_layer, self.keep_cls)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    @property
    def grid_size(self) -> int:
        """Side of the square grid of feature tokens (CLS not counted)."""
        return math.isqrt(self.num_tokens - int(self.has_cls and self.keep_cls))

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def image_processor(self) -> ImageProcessor:
        """ocelli's image processor for this encoder: its input size and statistics."""
        from ocelli.data.images import ImageProcessor  # model must not need data to import

        return ImageProcessor(size=self.image_size, mean=self.image_mean, std=self.image_std)

    def save_pretrained(self, directory: str | Path) -> None:
        """Save the Hugging Face vision model (what `load_vision_encoder` reads back)."""
        self.model.save_pretrained(directory)

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) pixels -> (B, num_tokens, hidden_size) features."""
        return self(pixel_values)


class PatchTransformerEncoder(VisionEncoder):
    """ViT-style encoders: hidden_states[0] is the embedding output, then one per layer."""

    @classmethod
    def num_hidden_states(cls, config: PretrainedConfig) -> int:
        return config.num_hidden_layers + 1

    @classmethod
    def count_tokens(cls, config: PretrainedConfig, feature_layer: int, keep_cls: bool) -> int:
        return (config.image_size // config.patch_size) ** 2 + int(cls.has_cls and keep_cls)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        outputs = self.model(pixel_values.to(self.dtype), output_hidden_states=True)
        features = outputs.hidden_states[self.feature_layer]
        if self.has_cls and not self.keep_cls:
            features = features[:, 1:]
        return features


@register_vision_adapter("clip_vision_model", "clip")
class CLIPEncoder(PatchTransformerEncoder):
    model_class = CLIPVisionModel
    composite_model_types = ("clip",)
    has_cls = True
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD


@register_vision_adapter("siglip_vision_model", "siglip")
class SiglipEncoder(PatchTransformerEncoder):
    model_class = SiglipVisionModel
    composite_model_types = ("siglip",)


@register_vision_adapter("convnext")
class ConvNextEncoder(VisionEncoder):
    """ConvNeXt: features are one stage's feature map, flattened to (B, H*W, C).
    hidden_states[0] is the stem output; hidden_states[i] the output of stage i."""

    model_class = ConvNextModel
    image_mean = IMAGENET_MEAN
    image_std = IMAGENET_STD

    @classmethod
    def num_hidden_states(cls, config: PretrainedConfig) -> int:
        return config.num_stages + 1

    @classmethod
    def _stage(cls, config: PretrainedConfig, feature_layer: int) -> int:
        return feature_layer % cls.num_hidden_states(config)

    @classmethod
    def feature_size(cls, config: PretrainedConfig, feature_layer: int) -> int:
        return config.hidden_sizes[max(cls._stage(config, feature_layer) - 1, 0)]

    @classmethod
    def count_tokens(cls, config: PretrainedConfig, feature_layer: int, keep_cls: bool) -> int:
        side = config.image_size // config.patch_size  # the stem is a patchify convolution
        for _ in range(1, cls._stage(config, feature_layer)):
            side //= 2  # every stage after the first starts with a stride-2 downsampling
        return side * side

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        outputs = self.model(pixel_values.to(self.dtype), output_hidden_states=True)
        return outputs.hidden_states[self.feature_layer].flatten(2).transpose(1, 2)


def vision_adapter(config: PretrainedConfig) -> type[VisionEncoder]:
    """The adapter class for a vision config (RegistryError if none handles its type)."""
    return VISION_ADAPTERS.get(config.model_type)


def build_vision_encoder(
    spec: ComponentSpec, feature_layer: int = -2, keep_cls: bool = False, **overrides: Any
) -> VisionEncoder:
    """An encoder from a preset name or config (random weights, `overrides` applied) or
    from a local checkpoint directory (weights loaded)."""
    component = resolve_component(spec, VISION_ENCODERS, "vision encoder", overrides)
    if component.checkpoint is not None:
        return load_vision_encoder(component.checkpoint, feature_layer, keep_cls)
    return vision_adapter(component.config).from_config(component.config, feature_layer, keep_cls)


def load_vision_encoder(
    path: str | Path, feature_layer: int = -2, keep_cls: bool = False
) -> VisionEncoder:
    """Load from a directory holding a vision model or a full CLIPModel/SiglipModel."""
    model_type = read_config(path, "vision encoder")["model_type"]
    return VISION_ADAPTERS.get(model_type).from_pretrained(path, feature_layer, keep_cls)
