"""Streamed answers decoded a few tokens at a time: the text sent adds up to exactly what
decoding the whole answer gives, in English, in Chinese split into byte-level tokens, with
stop strings, and for tokenizers that decode a text's first token differently."""

from __future__ import annotations

import random

import pytest

from ocelli.data.tokenizer import train_tokenizer
from ocelli.serve.text import IncrementalText, StreamedAnswer, TextStream

CORPUS = [
    "There is a red cube to the left of the blue sphere.",
    "How many green cylinders are there? Two.",
    "红色的立方体在蓝色球体的左边。有几个绿色的圆柱体？两个。",
] * 10
ANSWERS = [
    "There are two red cubes, left of the big blue sphere.",
    "红色的立方体在蓝色球体的左边。",
    "Two: 两个绿色的圆柱体 and one cube.   ",
    "  leading spaces, then 中文, then trailing ones  ",
]


@pytest.fixture(scope="module")
def tokenizer():
    # A small vocabulary: most Chinese characters are split into byte-level tokens.
    return train_tokenizer(CORPUS, vocab_size=280)


def decoder(tokenizer):
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


def expected_answer(decoded: str, stop: tuple[str, ...]) -> str:
    """The answer in the whole decoded text: up to the first stop string, stripped."""
    cuts = [decoded.find(s) for s in stop if s in decoded]
    return decoded[: min(cuts)].strip() if cuts else decoded.strip()


def full_decode_stream(decode, token_ids: list[int], stop: tuple[str, ...]) -> list[str]:
    """The deltas of the engine before incremental decoding: the whole answer decoded at
    every token."""
    stream = TextStream(stop)
    deltas = [stream.update(decode(token_ids[: end + 1])) for end in range(len(token_ids))]
    deltas.append(stream.update(decode(token_ids), final=True))
    return deltas


def streamed(decode, token_ids: list[int], stop: tuple[str, ...]) -> tuple[list[str], str]:
    """The deltas and text of a StreamedAnswer fed one token at a time, as the engine does
    (it stops feeding once a stop string appeared)."""
    answer = StreamedAnswer(decode, stop)
    deltas = []
    for end in range(len(token_ids)):
        deltas.append(answer.update(token_ids[: end + 1]))
        if answer.stopped:
            break
    deltas.append(answer.finish(token_ids))
    return deltas, answer.text


def test_chinese_characters_span_several_tokens(tokenizer):
    ids = tokenizer.encode(ANSWERS[1], add_special_tokens=False)
    pieces = [tokenizer.decode([i]) for i in ids]
    assert any("\ufffd" in piece for piece in pieces)  # the tests below cover split bytes


@pytest.mark.parametrize("text", ANSWERS)
@pytest.mark.parametrize("stop", [(), ("cube",), ("的左",), ("蓝色球体的左边", "sphere.")])
def test_streamed_text_is_the_full_decode(tokenizer, text, stop):
    decode = decoder(tokenizer)
    ids = tokenizer.encode(text, add_special_tokens=False)
    deltas, final = streamed(decode, ids, stop)
    assert "".join(deltas) == final == expected_answer(decode(ids), stop)
    assert "".join(full_decode_stream(decode, ids, stop)) == final


def test_a_stop_string_before_a_partial_character_is_held_back():
    """Its start is not sent while the next character's bytes are still arriving."""
    stream = TextStream(("的左",))
    assert stream.update("红色的\ufffd") == "红色"
    assert stream.update("红色的左边") == ""
    assert stream.stopped and stream.text == "红色"


def test_random_tokens_with_broken_bytes_stream_as_the_full_decode(tokenizer):
    """Arbitrary ids make invalid and unfinished UTF-8 sequences anywhere in the answer."""
    decode = decoder(tokenizer)
    rng = random.Random(0)
    for _ in range(50):
        ids = [rng.randrange(len(tokenizer)) for _ in range(rng.randrange(1, 40))]
        text = IncrementalText(decode)
        for end in range(len(ids)):
            text.update(ids[: end + 1])
            assert decode(ids[: end + 1]).startswith(text.text)
        deltas, final = streamed(decode, ids, ())
        assert "".join(deltas) == final == expected_answer(decode(ids), ())


def test_a_first_token_decoded_differently_does_not_change_the_text():
    """SentencePiece-style pieces: '▁' is a space, dropped at the start of a text; a window
    that began at the new token would lose the space between words."""
    pieces = {0: "▁the", 1: "▁red", 2: "▁cube", 3: "s", 4: "."}

    def decode(ids: list[int]) -> str:
        return "".join(pieces[i] for i in ids).replace("▁", " ").removeprefix(" ")

    ids = [0, 1, 2, 3, 4, 1]
    text = IncrementalText(decode)
    for end in range(len(ids)):
        text.update(ids[: end + 1])
        assert text.text == decode(ids[: end + 1])
