import math

import pytest
import torch

from ocelli.errors import CheckpointError, ImageError, PromptError

PROMPTS = [
    "What colour is the cube?",
    "How many green cylinders are there to the left of the big blue sphere?",
    "有几个球？",
    "Compare <image> with <image>",
]


def _images_for(image_paths):
    return [image_paths[0], [image_paths[1]], None, image_paths[:2]]


def test_batched_greedy_matches_one_at_a_time(pipeline, image_paths):
    images = _images_for(image_paths)
    one_by_one = [
        pipeline.chat(sample_images, prompt, max_new_tokens=8)
        for sample_images, prompt in zip(images, PROMPTS, strict=True)
    ]
    assert pipeline.chat_batch(images, PROMPTS, max_new_tokens=8) == one_by_one
    assert any(one_by_one), "the tiny model should say something"


def test_greedy_is_the_default_and_repeatable(pipeline, image_paths):
    first = pipeline.chat(image_paths[0], PROMPTS[0], max_new_tokens=6)
    assert pipeline.chat(image_paths[0], PROMPTS[0], max_new_tokens=6) == first
    assert pipeline.chat(image_paths[0], PROMPTS[0], max_new_tokens=6, temperature=0.0) == first


def test_max_new_tokens_bounds_the_answer(pipeline, image_paths):
    answer = pipeline.chat(image_paths[0], PROMPTS[0], max_new_tokens=3)
    assert len(pipeline.processor.tokenizer.encode(answer, add_special_tokens=False)) <= 3 + 1


def test_sampling_with_a_seed_is_reproducible(pipeline, image_paths):
    def sample(seed):
        return pipeline.chat(
            image_paths[0],
            PROMPTS[0],
            do_sample=True,
            temperature=1.5,
            top_p=0.95,
            seed=seed,
            max_new_tokens=8,
        )

    state = torch.random.get_rng_state()
    assert sample(1) == sample(1)
    assert len({sample(seed) for seed in range(4)}) > 1
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched


def test_beam_search_runs(pipeline, image_paths):
    answer = pipeline.chat(image_paths[0], PROMPTS[0], num_beams=3, max_new_tokens=5)
    assert isinstance(answer, str)
    answers = pipeline.chat_batch(
        _images_for(image_paths)[:2], PROMPTS[:2], num_beams=2, max_new_tokens=4
    )
    assert len(answers) == 2


def test_placeholders_are_added_for_images(pipeline, image_paths):
    messages = pipeline.conversation(image_paths[:2], "Which is bigger?", system="Be brief.")
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "<image>\n<image>\nWhich is bigger?"},
    ]
    history = messages[1:] + [{"role": "assistant", "content": "The left one."}]
    follow_up = pipeline.conversation(image_paths[:3], "And this one?", history=history)
    assert follow_up[-1] == {"role": "user", "content": "<image>\nAnd this one?"}
    assert isinstance(
        pipeline.chat(image_paths[:3], "And this one?", history=history, max_new_tokens=3), str
    )


def test_score_candidates(pipeline, image_paths):
    candidates = ["red", "blue sphere", "两个", ""]
    scores = pipeline.score_candidates(image_paths[0], PROMPTS[0], candidates)
    assert len(scores) == 4 and all(math.isfinite(s) and s < 0 for s in scores)
    one_at_a_time = pipeline.score_candidates(image_paths[0], PROMPTS[0], candidates, batch_size=1)
    assert scores == pytest.approx(one_at_a_time, abs=1e-3)
    assert pipeline.score_candidates(image_paths[0], PROMPTS[0], []) == []


def test_score_is_the_sum_of_token_log_probs(pipeline, image_paths):
    """Scoring "x" then "xy" adds exactly the log-prob of "y" given "x", up to <|im_end|>."""
    processor = pipeline.processor
    (score,) = pipeline.score_candidates(None, "Say something.", ["red"])
    prompt = processor.encode_prompt([{"role": "user", "content": "Say something."}], 0)[
        "input_ids"
    ]
    answer = processor.tokenizer.encode("red<|im_end|>", add_special_tokens=False)
    ids = torch.tensor([prompt + answer])
    with torch.inference_mode():
        log_probs = torch.log_softmax(pipeline.model(input_ids=ids).logits.float(), dim=-1)
    expected = sum(
        log_probs[0, len(prompt) + i - 1, token].item() for i, token in enumerate(answer)
    )
    assert score == pytest.approx(expected, abs=1e-4)


def test_bad_image_path_is_an_image_error(pipeline, tmp_path):
    with pytest.raises(ImageError, match="missing.png not found"):
        pipeline.chat(tmp_path / "missing.png", "What is this?")
    with pytest.raises(ImageError, match="missing.png"):
        pipeline.chat_batch([[tmp_path / "missing.png"]], ["What is this?"])


def test_prompt_errors(pipeline, image_paths):
    with pytest.raises(PromptError, match="1 image"):
        pipeline.chat(image_paths[0], "<image> and <image>?")
    with pytest.raises(PromptError, match="empty prompt"):
        pipeline.chat(None, "   ")
    with pytest.raises(PromptError, match="2 prompt"):
        pipeline.chat_batch([None], ["a", "b"])


def test_load_errors(tmp_path, model_dir):
    from ocelli.generate import load

    with pytest.raises(CheckpointError, match="not found"):
        load(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no config.json"):
        load(tmp_path)
    (tmp_path / "config.json").write_bytes((model_dir / "config.json").read_bytes())
    with pytest.raises(CheckpointError, match="missing ocelli_processor.json"):
        load(tmp_path)


def test_load_with_a_dtype_name(model_dir):
    from ocelli.errors import ConfigError
    from ocelli.generate import load

    assert load(model_dir, dtype="bfloat16").dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="'float99' is not a torch dtype"):
        load(model_dir, dtype="float99")
