"""The expert-model baseline: a captioner's descriptions stand in for the images of a
text-only language model's prompt."""

import math

import pytest
import torch

from ocelli.errors import ConfigError
from ocelli.generate import ExpertPipeline, load
from ocelli.generate.expert import load_text_model

from .conftest import CORPUS


@pytest.fixture(scope="module")
def text_lm_dir(tmp_path_factory):
    """A tiny random Llama saved with the tokenizer the captioner uses (as stage 0 saves)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ocelli.data.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(CORPUS, vocab_size=320)
    torch.manual_seed(3)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        vocab_size=len(tokenizer),
        initializer_range=0.2,
    )
    directory = tmp_path_factory.mktemp("text-lm")
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def expert(model_dir, text_lm_dir):
    pipeline = load(f"expert:{model_dir},{text_lm_dir}")
    pipeline.caption_max_new_tokens = 8  # a random captioner never stops on its own
    return pipeline


def test_answers_are_the_text_model_answering_from_the_captions(expert, image_paths):
    assert isinstance(expert, ExpertPipeline)
    question = "How many green cylinders are there?"
    caption_prompt = expert.caption_prompt_for(question)
    assert caption_prompt == "Describe the image in detail."
    caption = expert.captioner.chat(image_paths[0], caption_prompt, max_new_tokens=8)
    assert expert.describe([image_paths[0]]) == [caption]
    alone = expert.answerer.chat(None, f"{caption}\n{question}", max_new_tokens=8)
    assert expert.chat(image_paths[0], question, max_new_tokens=8) == alone
    assert expert.chat(image_paths[0], f"<image>\n{question}", max_new_tokens=8) == alone


def test_batches_match_one_at_a_time(expert, image_paths):
    images = [[image_paths[0]], [image_paths[1], image_paths[0]], None]
    prompts = ["How many?", "<image> left of <image>?", "Two?"]
    batched = expert.chat_batch(images, prompts, max_new_tokens=6)
    assert batched == [
        expert.chat(i, p, max_new_tokens=6) for i, p in zip(images, prompts, strict=True)
    ]
    scores = expert.score_batch(images, prompts, [["Two.", "red"]] * 3)
    assert all(len(row) == 2 and all(math.isfinite(s) for s in row) for row in scores)


def test_images_are_described_in_the_language_of_the_question(expert, image_paths):
    english, chinese = expert.describe([image_paths[0]] * 2, ["How many?", "有几个？"])
    assert english == expert.captioner.chat(
        image_paths[0], "Describe the image in detail.", max_new_tokens=8
    )
    assert chinese == expert.captioner.chat(image_paths[0], "详细描述这张图片。", max_new_tokens=8)
    with pytest.raises(ConfigError, match="'en'"):
        ExpertPipeline(None, None, caption_prompt={"zh": "描述"})


def test_text_prompt_puts_each_description_where_its_image_was():
    expert = ExpertPipeline(captioner=None, answerer=None)
    assert expert.text_prompt(["A red cube."], "What colour?") == "A red cube.\nWhat colour?"
    assert expert.text_prompt(["A", "B"], "<image> or <image>?") == "A or B?"
    assert expert.text_prompt(["A", "B"], "<image>\nWhich?") == "B\nA\nWhich?"


def test_saved_expert_loads_and_evaluates_through_the_local_backend(
    expert, model_dir, text_lm_dir, image_paths, tmp_path
):
    from ocelli.eval.backends import LocalBackend, Request

    saved = ExpertPipeline.from_dirs(model_dir, text_lm_dir, caption_max_new_tokens=8).save(
        tmp_path / "expert"
    )
    reloaded = load(saved)
    assert isinstance(reloaded, ExpertPipeline) and reloaded.caption_max_new_tokens == 8
    question = "How many spheres?"
    backend = LocalBackend(saved)
    request = Request(images=[str(image_paths[2])], prompt=question, max_new_tokens=5)
    assert backend.generate([request]) == [expert.chat(image_paths[2], question, max_new_tokens=5)]
    ranked = backend.rank([Request([str(image_paths[2])], question, 5, ["Two.", "red"])])
    assert ranked[0][0] in ("Two.", "red")
    assert backend.identity()["model_config_hash"]


def test_text_model_may_be_an_ocelli_model(model_dir):
    pipeline = load_text_model(model_dir)
    assert pipeline.chat(None, "Two?", max_new_tokens=3) == load(model_dir).chat(
        None, "Two?", max_new_tokens=3
    )


@pytest.mark.parametrize("spec", ["expert:only-one", "expert:a,b,c", "expert:,b"])
def test_bad_spec_names_the_expected_form(spec):
    with pytest.raises(ConfigError, match="CAPTIONER_DIR,LM_DIR"):
        load(spec)
