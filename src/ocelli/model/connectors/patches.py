"""Encoder-free (Fuyu): the image is cut into `patch_size` patches whose raw pixels are
linearly projected straight into the LM; there is no vision encoder
(`vision_config` is None) and the LM learns to see.

Fuyu also takes any resolution and marks row ends with a newline token; here images
have one fixed `image_size` (the processor resizes them), so every image gives
(image_size / patch_size)² tokens and no row markers are needed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ocelli.errors import ConfigError, ImageError
from ocelli.model.connectors.base import Connector, require_positive_ints
from ocelli.model.registry import register_connector


@register_connector("patches")
class PatchConnector(Connector):
    requires_vision_encoder = False
    default_options = {"patch_size": 8, "image_size": 64}

    def __init__(self, vision_dim: int, text_dim: int, **options: Any) -> None:
        # the "features" standardised and calibrated here are the flattened patches
        patch_size = self.resolve_options(options)["patch_size"]
        super().__init__(3 * patch_size**2, text_dim, **options)
        self.projection = nn.Linear(self.vision_dim, text_dim)

    @classmethod
    def check_dimensions(cls, vision_dim: int, text_dim: int, options: dict[str, Any]) -> None:
        require_positive_ints(cls, options, "patch_size", "image_size")
        if options["image_size"] % options["patch_size"]:
            raise ConfigError(
                f"connector patches: connector_config.image_size {options['image_size']} is not "
                f"a multiple of patch_size {options['patch_size']}; pick sizes that divide"
            )

    @classmethod
    def output_tokens(cls, num_input_tokens: int, options: dict[str, Any]) -> int:
        return (options["image_size"] // options["patch_size"]) ** 2

    def patchify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_patches, 3 * patch_size²), patches in row-major order."""
        size = self.options["image_size"]
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, size, size):
            raise ImageError(
                f"connector patches takes pixel_values of shape (num_images, 3, {size}, {size}), "
                f"got {tuple(pixel_values.shape)}; resize images to connector_config.image_size"
            )
        patch = self.options["patch_size"]
        return nn.functional.unfold(pixel_values, patch, stride=patch).transpose(1, 2)

    @torch.no_grad()
    def calibrate(self, pixel_values: torch.Tensor, eps: float = 1e-5) -> None:
        """Statistics per patch entry, from (num_images, 3, H, W) pixels."""
        super().calibrate(self.patchify(pixel_values), eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        patches = self.patchify(pixel_values.to(self.projection.weight.dtype))
        return self.projection(self.standardize(patches))
