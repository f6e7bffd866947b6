"""A tiny random model saved with its processor: generates junk, but deterministic junk."""

import numpy as np
import pytest
import torch
from PIL import Image

from ocelli.data.processing import OcelliProcessor
from ocelli.data.tokenizer import train_tokenizer

CORPUS = [
    "There is a red cube to the left of the blue sphere.",
    "How many green cylinders are there? Two.",
    "红色的立方体在蓝色球体的左边。有几个绿色的圆柱体？两个。",
] * 10


def tiny_model_and_processor(corpus=CORPUS, vocab_size=320):
    """A random CLIP-tiny + MLP + Llama-tiny model with a tokenizer trained on `corpus`."""
    from ocelli.model import OcelliForConditionalGeneration

    tokenizer = train_tokenizer(corpus, vocab_size=vocab_size)
    torch.manual_seed(0)
    model = OcelliForConditionalGeneration.from_components(
        vision="clip-tiny",
        language_model="llama-tiny",
        connector="mlp",
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vocab_size=len(tokenizer),
        # Exactly the tokenizer's ids, so every generated id decodes to text.
        language_model_overrides={"vocab_size": len(tokenizer)},
    )
    processor = OcelliProcessor.for_model(model, tokenizer)
    return model, processor


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    model, processor = tiny_model_and_processor()
    directory = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def pipeline(model_dir):
    from ocelli.generate import load

    return load(model_dir)


@pytest.fixture(scope="session")
def image_paths(tmp_path_factory):
    directory = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(3):
        pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        path = directory / f"scene{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths
