"""Every interface trains through the recipe's stages (`ocelli train --connector NAME`,
tiny world and models, two steps a stage), then loads and generates. It lives with the
model tests because what it checks is that each connector fits the rest of ocelli."""

import pytest
import torch

from ocelli.cli import main
from ocelli.model import CONNECTORS, OcelliForConditionalGeneration

TINY = [
    "world.train_images=32",
    "world.val_images=0",
    "world.test_images=4",
    "world.cogent_images=4",
    "world.langs=[en]",
    "model.language_model_overrides={hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2}",
    "model.vision_overrides={hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 2}",
    "vision.train.batch_size=8",
    "text.train.batch_size=8",
    "align.train.batch_size=8",
    "perceive.train.batch_size=8",
    "instruct.train.batch_size=8",
]


@pytest.mark.slow
@pytest.mark.parametrize("connector", CONNECTORS.names())
def test_each_interface_trains_loads_and_generates(connector, tmp_path):
    overrides = [arg for item in TINY for arg in ("--set", item)]
    command = ["train", "--recipe", "quickstart", "--max-steps", "2", "--vision", "siglip-tiny"]
    assert main([*command, "--connector", connector, "--out", str(tmp_path), *overrides]) == 0
    model = OcelliForConditionalGeneration.from_pretrained(tmp_path / "instruct" / "final").eval()
    assert model.config.connector == connector
    config = model.config
    encoder_free = not CONNECTORS.get(connector).requires_vision_encoder
    # an encoder-free connector skips stage 0 vision and reads the world's pixels
    assert (tmp_path / "vision").exists() != encoder_free
    assert (config.vision_config is None) == encoder_free
    ids = torch.tensor([[1] + [config.image_token_id] * config.num_image_tokens + [7, 8]])
    size = (
        config.connector_config["image_size"] if encoder_free else config.vision_config.image_size
    )
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            pixel_values=torch.randn(1, 3, size, size),
            max_new_tokens=2,
            min_new_tokens=2,
            do_sample=False,
            pad_token_id=config.pad_token_id,
        )
    assert out.shape == (1, ids.shape[1] + 2)
