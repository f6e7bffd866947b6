import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from ocelli.data.chat_template import CHAT_TEMPLATE
from ocelli.data.tokenizer import SPECIAL_TOKENS, load_tokenizer, train_tokenizer
from ocelli.errors import CheckpointError, DataError

CORPUS = [
    "There is a red cube to the left of the blue sphere.",
    "How many green cylinders are there? There are two green cylinders.",
    "红色的立方体在蓝色球体的左边。",
    "有几个绿色的圆柱体？有两个绿色的圆柱体。",
] * 10 + ["稀有的字：龘"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS, vocab_size=512)


def test_special_tokens_have_fixed_ids_and_roles(tokenizer):
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tokenizer.eos_token == tokenizer.bos_token == "<|endoftext|>"
    assert tokenizer.pad_token == "<|pad|>"
    assert tokenizer.chat_template == CHAT_TEMPLATE


@pytest.mark.parametrize("text", ["<image>", "a<image>b", "<image><image>\nWhat?", "红<image>色"])
def test_image_placeholder_is_always_one_token(tokenizer, text):
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids.count(image_id) == text.count("<image>")
    assert tokenizer.decode(ids) == text


def test_frequent_chinese_characters_are_single_tokens(tokenizer):
    for character in "红色的立方体绿圆柱":
        ids = tokenizer.encode(character, add_special_tokens=False)
        assert len(ids) == 1, f"{character} split into {ids}"
    # A character seen once stays as its bytes, but no token mixes two characters.
    assert len(tokenizer.encode("龘", add_special_tokens=False)) > 1
    for token_id in tokenizer.encode("红色的立方体在蓝色球体的左边。", add_special_tokens=False):
        assert len(tokenizer.decode([token_id])) == 1


@pytest.mark.parametrize(
    "text", ["There is a red cube.", "有几个绿色的圆柱体？", "mixed 红 text 龘 ✓ émoji 🙂"]
)
def test_decoding_round_trips(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_training_is_deterministic(tokenizer):
    again = train_tokenizer(CORPUS, vocab_size=512)
    assert again.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()


def test_saves_and_loads_with_auto_tokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    text = "<image>\nHow many green cylinders? 两个。"
    assert loaded.encode(text) == tokenizer.encode(text)
    assert loaded.chat_template == CHAT_TEMPLATE
    assert (loaded.eos_token, loaded.pad_token) == ("<|endoftext|>", "<|pad|>")
    assert load_tokenizer(tmp_path).get_vocab() == tokenizer.get_vocab()


def test_bad_training_input_is_a_data_error():
    with pytest.raises(DataError, match="no texts"):
        train_tokenizer([])
    with pytest.raises(DataError, match="too small"):
        train_tokenizer(CORPUS, vocab_size=100)
    with pytest.raises(DataError, match="text 1 is a int"):
        train_tokenizer(["fine", 3])


def _plain_tokenizer_dir(tmp_path):
    """A tokenizer from elsewhere: no <image>, no chat template, no pad token."""
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["</s>"],
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>").save_pretrained(tmp_path)
    return tmp_path


def test_load_tokenizer_completes_a_foreign_tokenizer(tmp_path):
    tokenizer = load_tokenizer(_plain_tokenizer_dir(tmp_path))
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.pad_token == "</s>"
    for token in ("<image>", "<|im_start|>", "<|im_end|>"):
        assert len(tokenizer.encode(f"x{token}y", add_special_tokens=False)) == 3


def test_load_tokenizer_keeps_an_existing_template(tmp_path):
    plain = _plain_tokenizer_dir(tmp_path)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = load_tokenizer(plain)
    assert tokenizer.chat_template == config["chat_template"]
    assert "<image>" in tokenizer.get_vocab() and "<|im_start|>" not in tokenizer.get_vocab()


def test_load_tokenizer_errors_name_the_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{ not json")
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        load_tokenizer(tmp_path)
