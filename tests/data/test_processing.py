import json

import pytest
import torch
from PIL import Image

from ocelli.data.chat_template import render_chat
from ocelli.data.images import ImageProcessor
from ocelli.data.processing import IGNORE_INDEX, OcelliProcessor
from ocelli.data.tokenizer import train_tokenizer
from ocelli.errors import CheckpointError, PromptError

CORPUS = [
    "There is a red cube to the left of the blue sphere.",
    "How many green cylinders are there? Two.",
    "红色的立方体在蓝色球体的左边。有几个绿色的圆柱体？两个。",
] * 10
NUM_IMAGE_TOKENS = 4
CONVERSATION = [
    {"role": "system", "content": "You answer questions about scenes."},
    {"role": "user", "content": "<image>\nWhat colour is the cube?"},
    {"role": "assistant", "content": "The cube is red."},
    {"role": "user", "content": "And here? <image>"},
    {"role": "assistant", "content": "红色的立方体。"},
    {"role": "user", "content": "How many cylinders?"},
    {"role": "assistant", "content": " Two green cylinders."},
]


@pytest.fixture(scope="module")
def processor():
    tokenizer = train_tokenizer(CORPUS, vocab_size=400)
    return OcelliProcessor(tokenizer, ImageProcessor(size=8), NUM_IMAGE_TOKENS, max_length=256)


def _expected_labels(processor, messages):
    """Labels derived from the rendered template text alone: a token is labelled exactly
    when its characters lie inside an assistant turn's content or its closing <|im_end|>."""
    text = render_chat(messages)
    header, end_marker = "<|im_start|>assistant\n", "<|im_end|>"
    spans, start = [], text.find(header)
    while start != -1:
        begin = start + len(header)
        end = text.index(end_marker, begin) + len(end_marker)
        spans.append((begin, end))
        start = text.find(header, end)
    encoding = processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids, labels = [], []
    for token, (first, last) in zip(encoding["input_ids"], encoding["offset_mapping"], strict=True):
        inside = any(begin <= first and last <= end for begin, end in spans)
        straddles = any(first < begin < last or first < end < last for begin, end in spans)
        assert not straddles, f"token {token} crosses an assistant boundary"
        copies = NUM_IMAGE_TOKENS if token == processor.image_token_id else 1
        input_ids += [token] * copies
        labels += [token if inside and copies == 1 else IGNORE_INDEX] * copies
    return input_ids, labels


def test_labels_match_the_template_token_by_token(processor):
    encoded = processor.encode_conversation(CONVERSATION, num_images=2)
    expected_ids, expected_labels = _expected_labels(processor, CONVERSATION)
    assert encoded["input_ids"] == expected_ids
    assert len(encoded["labels"]) == len(expected_labels)
    for position, (label, expected) in enumerate(
        zip(encoded["labels"], expected_labels, strict=True)
    ):
        token = processor.tokenizer.decode([encoded["input_ids"][position]])
        assert label == expected, f"position {position} ({token!r}): {label} != {expected}"


def test_labelled_text_is_exactly_the_answers(processor):
    encoded = processor.encode_conversation(CONVERSATION, num_images=2)
    labelled = [label for label in encoded["labels"] if label != IGNORE_INDEX]
    answers = [m["content"] + "<|im_end|>" for m in CONVERSATION if m["role"] == "assistant"]
    assert processor.tokenizer.decode(labelled) == "".join(answers)
    image_positions = [
        i for i, t in enumerate(encoded["input_ids"]) if t == processor.image_token_id
    ]
    assert len(image_positions) == 2 * NUM_IMAGE_TOKENS
    assert all(encoded["labels"][i] == IGNORE_INDEX for i in image_positions)


def test_openai_content_lists_encode_like_placeholders(processor):
    listed = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]},
        {"role": "assistant", "content": "Red."},
    ]
    placeholders = [
        {"role": "user", "content": "<image>\nWhat?"},
        {"role": "assistant", "content": "Red."},
    ]
    assert processor.encode_conversation(listed, 1) == processor.encode_conversation(
        placeholders, 1
    )


def test_prompt_ends_with_the_assistant_header(processor):
    prompt = processor.encode_prompt(CONVERSATION[:2], num_images=1)["input_ids"]
    text = render_chat(CONVERSATION[:2], add_generation_prompt=True)
    plain = processor.tokenizer.encode(text, add_special_tokens=False)
    assert len(prompt) == len(plain) + NUM_IMAGE_TOKENS - 1
    assert prompt[-5:] == plain[-5:]
    assert processor.decode(prompt).endswith("assistant")


@pytest.mark.parametrize("num_images", [0, 1, 3])
def test_placeholder_image_mismatch(processor, num_images):
    with pytest.raises(
        PromptError, match=f"2 <image> placeholder\\(s\\) in the text but {num_images}"
    ):
        processor.encode_conversation(CONVERSATION, num_images=num_images)


@pytest.mark.parametrize("messages", [[], [{"role": "user", "content": "  \n"}]])
def test_empty_prompt(processor, messages):
    with pytest.raises(PromptError, match="empty prompt"):
        processor.encode_prompt(messages, num_images=0)


def test_image_only_prompt_is_not_empty(processor):
    assert processor.encode_prompt([{"role": "user", "content": "<image>"}], 1)["input_ids"]


def test_over_long_prompt_names_length_and_limit(processor):
    long_text = "red cube " * 200
    with pytest.raises(PromptError, match=r"prompt is \d+ tokens .* over max_length 256"):
        processor.encode_prompt([{"role": "user", "content": long_text}], 0)
    with pytest.raises(PromptError, match="conversation is"):
        processor.encode_conversation(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": long_text}], 0
        )


def test_training_needs_an_assistant_turn(processor):
    with pytest.raises(PromptError, match="no assistant message"):
        processor.encode_conversation([{"role": "user", "content": "hello"}], 0)


def test_template_without_generation_markers_is_refused(processor):
    tokenizer = train_tokenizer(CORPUS, vocab_size=400)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    plain = OcelliProcessor(tokenizer, ImageProcessor(size=8), NUM_IMAGE_TOKENS)
    with pytest.raises(CheckpointError, match="generation"):
        plain.encode_conversation(CONVERSATION, 2)


def test_batch_is_left_padded_with_images(processor):
    batch = [
        [{"role": "user", "content": "<image>\nWhat colour is the cube?"}],
        [{"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "<image><image> compare"}],
    ]
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (16, 16), "blue")
    out = processor(batch, [red, None, [red, blue]])
    lengths = [
        len(processor.encode_prompt(m, m[0]["content"].count("<image>"))["input_ids"])
        for m in batch
    ]
    assert out["input_ids"].shape == (3, max(lengths))
    assert out["attention_mask"].sum(dim=1).tolist() == lengths
    assert out["attention_mask"][:, -1].tolist() == [1, 1, 1]  # left padding
    short = out["input_ids"][1]
    assert (short[: max(lengths) - lengths[1]] == processor.pad_token_id).all()
    assert out["pixel_values"].shape == (3, 3, 8, 8)
    right = processor(batch, [red, None, [red, blue]], padding_side="right")
    assert right["attention_mask"][:, 0].tolist() == [1, 1, 1]


def test_batch_errors_name_the_sample(processor):
    batch = [[{"role": "user", "content": "<image> a"}], [{"role": "user", "content": "<image> b"}]]
    with pytest.raises(
        PromptError, match=r"sample 1: 1 <image> placeholder\(s\) in the text but 2"
    ):
        processor(batch, [["x.png"], ["x.png", "y.png"]])
    with pytest.raises(PromptError, match="2 conversation\\(s\\) but 1 image list"):
        processor(batch, [["x.png"]])
    single = processor([{"role": "user", "content": "no images"}])
    assert "pixel_values" not in single and single["input_ids"].shape[0] == 1


def test_saves_and_loads(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "ocelli_processor.json").read_text())
    assert config["num_image_tokens"] == NUM_IMAGE_TOKENS
    loaded = OcelliProcessor.from_pretrained(tmp_path)
    assert loaded.encode_conversation(CONVERSATION, 2) == processor.encode_conversation(
        CONVERSATION, 2
    )
    assert loaded.image_processor == processor.image_processor and loaded.max_length == 256
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.parametrize(
    "missing", ["ocelli_processor.json", "preprocessor_config.json", "tokenizer_config.json"]
)
def test_missing_files_are_checkpoint_errors(processor, tmp_path, missing):
    processor.save_pretrained(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(CheckpointError, match=f"missing {missing}"):
        OcelliProcessor.from_pretrained(tmp_path)


def test_missing_directory_and_broken_config(processor, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        OcelliProcessor.from_pretrained(tmp_path / "nowhere")
    processor.save_pretrained(tmp_path)
    (tmp_path / "ocelli_processor.json").write_text(json.dumps({"image_token": "<image>"}))
    with pytest.raises(CheckpointError, match="num_image_tokens"):
        OcelliProcessor.from_pretrained(tmp_path)


def test_pad_returns_long_tensors(processor):
    out = processor.pad([[5, 6, 7], [8]], padding_side="left")
    assert out["input_ids"].dtype == torch.long
    assert out["input_ids"][1].tolist() == [processor.pad_token_id] * 2 + [8]
