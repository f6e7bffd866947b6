"""OcelliProcessor: conversations and images in, model inputs out.

One object joins the tokenizer (with the chat template), the image processor and the
number of image tokens each image becomes, so training, generation, evaluation and
serving all build inputs the same way. Each `<image>` placeholder in the rendered chat
is expanded into `num_image_tokens` copies of the image token; the model replaces those
positions with the image's features. With AnyRes (an `AnyResImageProcessor`), the count
depends on each image's grid, so the images or their sizes must come with the text.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from ocelli.data.anyres import AnyResImageProcessor, image_size
from ocelli.data.chat_template import IM_END, IMAGE_TOKEN, normalize_messages
from ocelli.data.images import PREPROCESSOR_CONFIG, ImageInput, ImageProcessor, load_image
from ocelli.data.tokenizer import load_tokenizer
from ocelli.errors import CheckpointError, ConfigError, PromptError
from ocelli.utils.io import atomic_write_bytes, atomic_write_json

PROCESSOR_CONFIG = "ocelli_processor.json"
IGNORE_INDEX = -100  # label of tokens the loss skips (PyTorch's cross_entropy default)

Messages = Sequence[dict[str, Any]]


class OcelliProcessor:
    """Tokenizer + image processor + image-token expansion."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: ImageProcessor,
        num_image_tokens: int,
        image_token: str = IMAGE_TOKEN,
        max_length: int | None = 2048,
    ) -> None:
        if image_token not in tokenizer.get_vocab():
            raise CheckpointError(
                f"the tokenizer has no {image_token!r} token; load it with "
                "ocelli.data.load_tokenizer(), which adds it"
            )
        if num_image_tokens < 1:
            raise CheckpointError(f"num_image_tokens must be at least 1, got {num_image_tokens}")
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.num_image_tokens = int(num_image_tokens)
        self.image_token = image_token
        self.image_token_id: int = tokenizer.convert_tokens_to_ids(image_token)
        self.max_length = max_length

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def stop_token_ids(self) -> list[int]:
        """Tokens that end an answer: `<|im_end|>` (the template's) and the eos token."""
        vocab = self.tokenizer.get_vocab()
        ids = [vocab[IM_END]] if IM_END in vocab else []
        eos = self.tokenizer.eos_token_id
        return ids + ([eos] if eos is not None and eos not in ids else [])

    # --- single conversations ---------------------------------------------------------

    @property
    def anyres(self) -> bool:
        """True when images are tiled (AnyRes) and their token count depends on their size."""
        return isinstance(self.image_processor, AnyResImageProcessor)

    def image_sizes(self, images: Sequence[ImageInput]) -> list[tuple[int, int]] | None:
        """(width, height) of each image when the token count depends on it (AnyRes), else None."""
        return [image_size(image) for image in images] if self.anyres else None

    def image_token_counts(
        self, num_images: int, image_sizes: Sequence[tuple[int, int]] | None = None
    ) -> list[int]:
        """Image tokens each of `num_images` images becomes."""
        if not self.anyres:
            return [self.num_image_tokens] * num_images
        if image_sizes is None or len(image_sizes) != num_images:
            raise PromptError(
                f"this processor tiles images (AnyRes), so each image's token count depends on "
                f"its size; pass image_sizes, one (width, height) per image ({num_images}), e.g. "
                "processor.image_sizes(images)"
            )
        return [
            self.image_processor.num_tokens(size, self.num_image_tokens) for size in image_sizes
        ]

    def encode_conversation(
        self,
        messages: Messages,
        num_images: int,
        image_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> dict[str, list[int]]:
        """Training inputs: `input_ids` and `labels`, where labels hold the ids of the
        assistant's tokens (content and closing `<|im_end|>`) and IGNORE_INDEX elsewhere.
        `image_sizes` ((width, height) per image) are needed with AnyRes only."""
        counts = self.image_token_counts(num_images, image_sizes)
        messages = self._checked(messages, num_images)
        if not any(message["role"] == "assistant" for message in messages):
            raise PromptError("conversation has no assistant message, so nothing to learn from")
        encoded = self.tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        assistant_mask = encoded["assistant_masks"]
        if not any(assistant_mask):
            raise CheckpointError(
                "the tokenizer's chat template marks no assistant tokens: it lacks "
                "{% generation %} blocks; use ocelli's CHAT_TEMPLATE"
            )
        labels = [
            token if in_answer else IGNORE_INDEX
            for token, in_answer in zip(encoded["input_ids"], assistant_mask, strict=True)
        ]
        input_ids, labels = self._expand_images(list(encoded["input_ids"]), labels, counts)
        self._check_length(input_ids, "conversation")
        return {"input_ids": input_ids, "labels": labels}

    def encode_prompt(
        self,
        messages: Messages,
        num_images: int,
        add_generation_prompt: bool = True,
        image_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> dict[str, list[int]]:
        """Generation inputs: the chat so far, ending with the assistant header."""
        counts = self.image_token_counts(num_images, image_sizes)
        messages = self._checked(messages, num_images)
        token_ids = self.tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
        )["input_ids"]
        input_ids, _ = self._expand_images(list(token_ids), None, counts)
        self._check_length(input_ids, "prompt")
        return {"input_ids": input_ids}

    def _checked(self, messages: Messages, num_images: int) -> list[dict[str, str]]:
        messages = normalize_messages(messages)
        if not messages:
            raise PromptError("empty prompt: there are no messages; ask something")
        placeholders = sum(message["content"].count(self.image_token) for message in messages)
        if (
            placeholders == 0
            and num_images == 0
            and not any(m["content"].strip() for m in messages)
        ):
            raise PromptError(
                "empty prompt: every message is blank and there is no image; ask something"
            )
        if placeholders != num_images:
            raise PromptError(
                f"{placeholders} {self.image_token} placeholder(s) in the text but {num_images} "
                f"image(s); put exactly one {self.image_token} in the text per image"
            )
        return messages

    def _expand_images(
        self, token_ids: list[int], labels: list[int] | None, counts: list[int]
    ) -> tuple[list[int], list[int] | None]:
        expanded_ids: list[int] = []
        expanded_labels: list[int] = []
        image = 0
        for position, token in enumerate(token_ids):
            if token == self.image_token_id:
                expanded_ids += [token] * counts[image]
                expanded_labels += [IGNORE_INDEX] * counts[image]
                image += 1
            else:
                expanded_ids.append(token)
                expanded_labels.append(labels[position] if labels is not None else IGNORE_INDEX)
        return expanded_ids, (expanded_labels if labels is not None else None)

    def _check_length(self, input_ids: list[int], what: str) -> None:
        if self.max_length is not None and len(input_ids) > self.max_length:
            image_tokens = input_ids.count(self.image_token_id)
            raise PromptError(
                f"{what} is {len(input_ids)} tokens ({image_tokens} of them image tokens), over "
                f"max_length {self.max_length}; shorten the text or use fewer images"
            )

    # --- batches ----------------------------------------------------------------------

    def __call__(
        self,
        batch_of_messages: Sequence[Messages],
        images: Sequence[ImageInput | Sequence[ImageInput] | None] | None = None,
        padding_side: str = "left",
        add_generation_prompt: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Batch of prompts for generation: `input_ids`, `attention_mask` (B, T) and, when
        there are images, `pixel_values` (all images of the batch in order, 3, H, W).

        `images[i]` holds sample i's images: None, one image or a list of them."""
        if padding_side not in ("left", "right"):
            raise PromptError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if batch_of_messages and isinstance(batch_of_messages[0], dict):
            # One conversation given on its own: `images` are that conversation's images.
            batch_of_messages, images = [batch_of_messages], [images]
        if not batch_of_messages:
            raise PromptError("empty batch: give at least one conversation")
        per_sample = _images_per_sample(images, len(batch_of_messages))
        if self.anyres:  # decoded once: their sizes set the token counts, then the pixels
            per_sample = [[load_image(image) for image in sample] for sample in per_sample]
        sequences = []
        for index, (messages, sample_images) in enumerate(
            zip(batch_of_messages, per_sample, strict=True)
        ):
            try:
                encoded = self.encode_prompt(
                    messages,
                    len(sample_images),
                    add_generation_prompt,
                    image_sizes=self.image_sizes(sample_images),
                )
            except PromptError as exc:
                if len(batch_of_messages) == 1:
                    raise
                raise PromptError(f"sample {index}: {exc}") from None
            sequences.append(encoded["input_ids"])
        batch = self.pad(sequences, padding_side)
        flat_images = [image for sample_images in per_sample for image in sample_images]
        if flat_images:
            batch["pixel_values"] = self.image_processor(flat_images)
        return batch

    def pad(
        self, sequences: Sequence[Sequence[int]], padding_side: str = "left"
    ) -> dict[str, torch.Tensor]:
        """Pad token id lists to one length; left padding keeps every prompt's last token
        in the last column, where generation continues from."""
        longest = max(len(sequence) for sequence in sequences)
        input_ids = torch.full((len(sequences), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            columns = (
                slice(longest - len(sequence), longest)
                if padding_side == "left"
                else slice(0, len(sequence))
            )
            input_ids[row, columns] = torch.as_tensor(sequence, dtype=torch.long)
            attention_mask[row, columns] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def decode(self, token_ids: Sequence[int] | torch.Tensor) -> str:
        """Text of generated tokens, without special tokens or surrounding whitespace."""
        return self.tokenizer.decode(token_ids, skip_special_tokens=True).strip()

    @classmethod
    def for_model(
        cls, model: Any, tokenizer: PreTrainedTokenizerBase, max_length: int | None = None
    ) -> OcelliProcessor:
        """The processor an OcelliForConditionalGeneration needs: its vision encoder's
        input size, mean and std, and its image tokens per image. `max_length` defaults
        to the language model's context length."""
        config = model.config
        if model.vision_tower is not None:
            image_processor = model.vision_tower.image_processor()
        elif "image_size" in config.connector_config:  # encoder-free: the connector's size
            image_processor = ImageProcessor(size=config.connector_config["image_size"])
        else:
            raise ConfigError(
                "the model has no vision encoder and its connector names no image_size, so "
                "the image size is unknown; build an ImageProcessor yourself and pass it to "
                "OcelliProcessor"
            )
        if getattr(config, "anyres", None):
            image_processor = AnyResImageProcessor(
                size=image_processor.size,
                mean=image_processor.mean,
                std=image_processor.std,
                anyres=config.anyres,
            )
        if max_length is None:
            max_length = getattr(config.text_config, "max_position_embeddings", None)
        return cls(tokenizer, image_processor, config.num_image_tokens, max_length=max_length)

    # --- saving and loading -----------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # transformers writes files in place; stage them and move each one atomically.
        with tempfile.TemporaryDirectory(prefix=".tokenizer.", dir=directory) as staging:
            self.tokenizer.save_pretrained(staging)
            for file in sorted(Path(staging).iterdir()):
                atomic_write_bytes(directory / file.name, file.read_bytes())
        self.image_processor.save_pretrained(directory)
        atomic_write_json(
            directory / PROCESSOR_CONFIG,
            {
                "processor_class": "OcelliProcessor",
                "num_image_tokens": self.num_image_tokens,
                "image_token": self.image_token,
                "max_length": self.max_length,
            },
        )

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> OcelliProcessor:
        directory = Path(directory)
        if not directory.is_dir():
            raise CheckpointError(f"processor directory {directory} not found")
        missing = [
            name
            for name in (PROCESSOR_CONFIG, PREPROCESSOR_CONFIG, "tokenizer_config.json")
            if not (directory / name).is_file()
        ]
        if missing:
            raise CheckpointError(
                f"{directory} is missing {', '.join(missing)}; save the processor there with "
                "OcelliProcessor.save_pretrained()"
            )
        try:
            config = json.loads((directory / PROCESSOR_CONFIG).read_text(encoding="utf-8"))
            num_image_tokens = int(config["num_image_tokens"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{directory / PROCESSOR_CONFIG} is invalid ({exc!r}); re-save the processor"
            ) from None
        return cls(
            load_tokenizer(directory),
            ImageProcessor.from_pretrained(directory),
            num_image_tokens=num_image_tokens,
            image_token=config.get("image_token", IMAGE_TOKEN),
            max_length=config.get("max_length"),
        )


def _images_per_sample(images: Sequence[Any] | None, batch_size: int) -> list[list[ImageInput]]:
    if images is None:
        return [[] for _ in range(batch_size)]
    if len(images) != batch_size:
        raise PromptError(
            f"{batch_size} conversation(s) but {len(images)} image list(s); give one list per conversation"
        )
    return [
        [] if sample is None else list(sample) if isinstance(sample, (list, tuple)) else [sample]
        for sample in images
    ]
