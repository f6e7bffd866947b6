"""Small generated worlds shared by the tests of ocelli.world (generated once per session)."""

from __future__ import annotations

import pytest

from ocelli.world import WorldConfig, generate_dataset

RICH_WORLD = WorldConfig(
    image_size=80,
    min_objects=2,
    max_objects=6,
    text_labels=0.6,
    rotation=True,
    occlusion=True,
    background="noise",
    langs=["en", "zh"],
    questions_per_image=10,
)


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory):
    """A bilingual world with labels, rotation, occlusion and noise: 24 images."""
    out = tmp_path_factory.mktemp("world") / "train"
    generate_dataset(out, 24, seed=7, split="train", config=RICH_WORLD, progress=False)
    return out
