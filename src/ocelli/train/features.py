"""Vision features computed once per image while the vision tower is frozen.

Stages 1 and 2 keep the encoder frozen, so its output for an image never changes: the
tower runs once per distinct image before training instead of once per step (on the
quickstart's 2 CPU cores the encoder would otherwise cost as much as the language model).
"""

from __future__ import annotations

from typing import Any

import torch
from rich.progress import track


@torch.no_grad()
def precompute_vision_features(
    model: Any, processor: Any, image_paths: list[str], batch_size: int = 64, progress: bool = True
) -> dict[str, torch.Tensor]:
    from ocelli.data.images import load_image

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    features: dict[str, torch.Tensor] = {}
    batches = range(0, len(image_paths), batch_size)
    for begin in track(batches, description="encoding images once") if progress else batches:
        chunk = image_paths[begin : begin + batch_size]
        pixels = processor.image_processor([load_image(path) for path in chunk]).to(device)
        for path, feature in zip(chunk, model.get_vision_features(pixels).cpu(), strict=True):
            features[path] = feature.clone()
    model.train(was_training)
    return features


@torch.no_grad()
def calibrate_connector(
    model: Any,
    processor: Any,
    image_paths: list[str],
    features: dict[str, torch.Tensor] | None = None,
    max_images: int = 2048,
) -> None:
    """Measure the connector's input statistics on (up to `max_images` of) the training
    images; `features` are reused when the stage already computed them."""
    if features is None:
        features = precompute_vision_features(
            model, processor, image_paths[:max_images], progress=False
        )
    sample = torch.stack([features[path] for path in list(features)[:max_images]])
    if getattr(model, "anyres", None) is not None:  # AnyRes: the crops in use, NaN slots left out
        sample = sample[model.anyres.present_slots(sample)]
    model.connector.calibrate(sample)
