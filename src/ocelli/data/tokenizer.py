"""Tokenizers: train a small byte-level BPE on the world's text, or load any local one.

Either way the result is a Hugging Face fast tokenizer that carries ocelli's chat
template and treats `<image>` as one special token, so it saves and loads with
`save_pretrained` / `AutoTokenizer.from_pretrained` and works with other engines.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from ocelli.data.chat_template import CHAT_TEMPLATE, IM_END, IM_START, IMAGE_TOKEN
from ocelli.errors import CheckpointError, DataError

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
# Order fixes their ids (0..4), which keeps trained tokenizers comparable across runs.
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN, IM_START, IM_END, IMAGE_TOKEN)

# Every CJK ideograph and CJK/full-width punctuation mark becomes its own pre-token.
# Byte-level BPE would otherwise learn merges across character boundaries (the last byte
# of one character with the first of the next), giving tokens that are fragments of
# characters; isolated, a character's three bytes can only merge with each other, so a
# frequent character ends up as exactly one token and a rare one as its bytes.
_CJK_CHARACTER = Regex(r"[\p{Han}\x{3000}-\x{303F}\x{FF00}-\x{FFEF}]")


def _new_bpe() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(_CJK_CHARACTER, behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    # Untrimmed offsets: the assistant-token mask maps characters to tokens and must
    # see the spaces that byte-level tokens carry.
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with ocelli's special tokens and chat template.

    `vocab_size` counts the 256 byte symbols and the special tokens; a small corpus may
    give fewer. The same texts in the same order give the same tokenizer.
    """
    minimum = len(SPECIAL_TOKENS) + len(pre_tokenizers.ByteLevel.alphabet())
    if vocab_size < minimum:
        raise DataError(
            f"vocab_size={vocab_size} is too small; byte-level BPE needs at least {minimum}"
        )
    tokenizer = _new_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    seen = {"count": 0}

    def counted(batch: Iterable[str]) -> Iterable[str]:
        for text in batch:
            if not isinstance(text, str):
                raise DataError(
                    f"tokenizer training text {seen['count']} is a {type(text).__name__}, not a str"
                )
            seen["count"] += 1
            yield text

    tokenizer.train_from_iterator(counted(texts), trainer=trainer)
    if seen["count"] == 0:
        raise DataError("no texts to train the tokenizer on; pass a non-empty iterable of strings")
    return _wrap(tokenizer)


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[IM_START, IM_END, IMAGE_TOKEN],
        chat_template=CHAT_TEMPLATE,
        # Chat and training batches are padded explicitly; generation pads on the left.
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """Load a local Hugging Face tokenizer and make it usable with ocelli.

    `<image>` is added as a special token when missing. A tokenizer without a chat
    template gets ocelli's, plus `<|im_start|>`/`<|im_end|>` if it lacks them. One
    without a pad token pads with its eos token. Added tokens grow the vocabulary: the
    language model's embeddings must then be resized to `len(tokenizer)`.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"tokenizer directory {path} not found; give a local Hugging Face tokenizer dir"
        )
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise CheckpointError(
            f"{path} holds no tokenizer.json or tokenizer_config.json; save one there with "
            "tokenizer.save_pretrained() or train one with ocelli.data.train_tokenizer()"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # transformers raises many types for a broken dir
        raise CheckpointError(f"could not load the tokenizer in {path}: {exc}") from exc
    missing = [IMAGE_TOKEN] if IMAGE_TOKEN not in tokenizer.get_vocab() else []
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
        missing += [token for token in (IM_START, IM_END) if token not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens(
            {"extra_special_tokens": missing}, replace_extra_special_tokens=False
        )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise CheckpointError(
                f"the tokenizer in {path} has neither a pad nor an eos token; add one"
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
