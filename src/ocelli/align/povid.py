"""POVID-style pairs (Zhou et al. 2024): the model's own answer about a corrupted image
as the rejected side, the world's faithful description as the chosen one.

The image is corrupted with the diffusion forward process VCD uses (ocelli.generate.
logits), applied to the pixels: what the model still says about an image it can
barely see comes from its language prior, which is the hallucination to unlearn. A
pair is kept only when the exact claim scorer finds the rejected answer unfaithful to
the real scene, so every pair is right by construction.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ocelli.align.pairs import PreferencePair
from ocelli.align.preference_data import span_pair
from ocelli.data.images import load_image
from ocelli.eval.metrics.claims import score_description
from ocelli.generate.logits import VCDConfig
from ocelli.world.loading import load_conversations, load_scenes


def noised_image(path: str | Path, noise_step: int = 500, seed: int = 0) -> Image.Image:
    """The image after `noise_step` steps of the diffusion forward process (pixels
    scaled to [-1, 1], seeded Gaussian noise, back to 8 bits)."""
    signal = VCDConfig(noise_step=noise_step).signal_level()
    pixels = np.asarray(load_image(path).convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    noise = np.random.default_rng(seed).standard_normal(pixels.shape).astype(np.float32)
    noised = signal * pixels + math.sqrt(1.0 - signal**2) * noise
    return Image.fromarray(((np.clip(noised, -1, 1) + 1) * 127.5).round().astype(np.uint8))


def povid_pairs(
    pipeline: Any,
    world_dir: str | Path,
    noise_step: int = 500,
    max_new_tokens: int = 96,
    limit: int | None = None,
    seed: int = 0,
) -> list[PreferencePair]:
    """One pair per English detailed-description record whose noised-image answer
    claims something false about the scene (greedy decoding)."""
    root = Path(world_dir).resolve()
    scenes = {scene.id: scene for scene in load_scenes(root)}
    records = [r for r in load_conversations(root, "describe.json") if r.get("lang") == "en"]
    pairs = []
    for index, record in enumerate(records[:limit]):
        scene = scenes[record["id"].rsplit("_", 1)[0]]
        prompt = record["conversations"][0]["value"].removeprefix("<image>\n")
        chosen = record["conversations"][1]["value"]
        image = str(root / record["image"])
        noised = noised_image(image, noise_step, seed * 1_000_003 + index)
        rejected = pipeline.chat(noised, prompt, max_new_tokens=max_new_tokens, do_sample=False)
        score = score_description(rejected, scene)
        if not rejected.strip() or rejected == chosen or score.precision >= 1.0:
            continue
        pairs.append(
            span_pair(
                record["id"],
                image,
                prompt,
                chosen,
                rejected,
                kind="povid",
                source="model/noised-image",
                image_id=scene.id,
                detail=f"noise step {noise_step}; rejected claim precision {score.precision:.3f}",
            )
        )
    return pairs
