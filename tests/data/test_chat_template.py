import pytest

from ocelli.data.chat_template import (
    CHAT_TEMPLATE,
    count_image_placeholders,
    llava_to_messages,
    normalize_messages,
    render_chat,
)
from ocelli.data.tokenizer import train_tokenizer
from ocelli.errors import DataError

CONVERSATION = [
    {"role": "system", "content": "You look at scenes."},
    {"role": "user", "content": "<image>\nWhat colour is the cube?"},
    {"role": "assistant", "content": "Red."},
    {"role": "user", "content": "立方体在哪里？"},
    {"role": "assistant", "content": "左边。"},
]


def test_renders_chatml_exactly():
    assert render_chat(CONVERSATION) == (
        "<|im_start|>system\nYou look at scenes.<|im_end|>\n"
        "<|im_start|>user\n<image>\nWhat colour is the cube?<|im_end|>\n"
        "<|im_start|>assistant\nRed.<|im_end|>\n"
        "<|im_start|>user\n立方体在哪里？<|im_end|>\n"
        "<|im_start|>assistant\n左边。<|im_end|>\n"
    )


def test_generation_prompt_opens_an_assistant_turn():
    prompt = render_chat(CONVERSATION[:2], add_generation_prompt=True)
    assert prompt.endswith("What colour is the cube?<|im_end|>\n<|im_start|>assistant\n")
    assert render_chat(CONVERSATION[:2]) + "<|im_start|>assistant\n" == prompt


def test_tokenizer_renders_the_same_template():
    tokenizer = train_tokenizer(["a red cube", "红色的立方体"] * 3, vocab_size=300)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.apply_chat_template(CONVERSATION, tokenize=False) == render_chat(CONVERSATION)


def test_openai_content_lists_become_placeholders():
    messages = normalize_messages(
        [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare "},
                    {"type": "image"},
                    {"type": "text", "text": " and "},
                    {"type": "image_url"},
                ],
            },
        ]
    )
    assert messages[0] == {"role": "user", "content": "<image>\nDescribe it."}
    assert messages[1]["content"] == "Compare <image>\n and <image>"
    assert count_image_placeholders(messages) == 3


@pytest.mark.parametrize(
    "bad, needle",
    [
        ([{"role": "robot", "content": "hi"}], "unknown role 'robot'"),
        ([{"role": "user"}], "needs 'role' and 'content'"),
        ([{"role": "user", "content": [{"type": "audio"}]}], "unknown content part"),
        ([{"role": "user", "content": 3}], "must be a string or a list"),
        ("just a string", "must be a list"),
    ],
)
def test_malformed_messages_raise_data_error(bad, needle):
    with pytest.raises(DataError, match=needle):
        normalize_messages(bad)


def test_llava_turns_map_to_roles():
    turns = [
        {"from": "system", "value": "s"},
        {"from": "human", "value": "<image>\nq"},
        {"from": "gpt", "value": "a"},
    ]
    assert [m["role"] for m in llava_to_messages(turns)] == ["system", "user", "assistant"]
    assert llava_to_messages(turns)[1]["content"] == "<image>\nq"


def test_llava_unknown_speaker_is_a_data_error():
    with pytest.raises(DataError, match=r"turn 1: unknown speaker 'bot'"):
        llava_to_messages([{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}])


def test_each_image_is_followed_by_a_line_break():
    """One "<image>\\n" per image before the question, as OcelliPipeline.conversation
    writes it, so the API and the library render the same prompt."""
    images = [{"type": "image"}, {"type": "image_url"}]
    content = [*images, {"type": "text", "text": "Which is red?"}]
    messages = normalize_messages([{"role": "user", "content": content}])
    assert messages[0]["content"] == "<image>\n<image>\nWhich is red?"
    alone = normalize_messages([{"role": "user", "content": images}])
    assert alone[0]["content"] == "<image>\n<image>"
