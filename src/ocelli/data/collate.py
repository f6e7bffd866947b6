"""Training datasets and batch collation for conversations with images.

Conversations are tokenised once, up front (the world's datasets are small and the
tokeniser is the slowest step per sample); images are decoded lazily and cached, so a
run over several epochs pays for each image once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from rich.progress import track

from ocelli.data.formats import ConversationRecord
from ocelli.errors import PromptError


class ConversationDataset(torch.utils.data.Dataset):
    """Map-style dataset: each item holds input_ids, labels and pixel_values (N_img, 3, H, W)."""

    def __init__(
        self,
        records: Sequence[ConversationRecord],
        processor: Any,
        cache_images: bool = True,
        progress: bool = False,
        vision_features: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.records = list(records)
        self.processor = processor
        self.cache_images = cache_images
        # precomputed vision-tower outputs by image path, used while the tower is frozen
        self.vision_features = vision_features
        self._pixel_cache: dict[str, torch.Tensor] = {}
        iterator = track(self.records, description="tokenising") if progress else self.records
        self.encoded = []
        for record in iterator:
            try:
                self.encoded.append(self._encode(record))
            except PromptError as exc:
                raise PromptError(f"record {record.id}: {exc}") from None

    def _encode(self, record: ConversationRecord) -> dict[str, list[int]]:
        if not getattr(self.processor, "anyres", False):
            return self.processor.encode_conversation(record.messages, len(record.images))
        # AnyRes: each image's token count depends on its size (read from the file header)
        sizes = self.processor.image_sizes([str(path) for path in record.images])
        return self.processor.encode_conversation(record.messages, len(record.images), sizes)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        encoded = self.encoded[index]
        item = {
            "input_ids": torch.as_tensor(encoded["input_ids"], dtype=torch.long),
            "labels": torch.as_tensor(encoded["labels"], dtype=torch.long),
        }
        if self.vision_features is not None and record.images:
            item["vision_features"] = torch.stack(
                [self.vision_features[str(path)] for path in record.images]
            )
        else:
            item["pixel_values"] = self._pixels(record)
        return item

    def image_paths(self) -> list[str]:
        """Every distinct image the records refer to, in first-seen order."""
        return list(dict.fromkeys(str(p) for record in self.records for p in record.images))

    def _pixels(self, record: ConversationRecord) -> torch.Tensor | None:
        if not record.images:
            return None
        tensors = []
        for path in record.images:
            key = str(path)
            pixels = self._pixel_cache.get(key)
            if pixels is None:
                from ocelli.data.images import load_image

                pixels = self.processor.image_processor([load_image(path)])[0]
                if self.cache_images:
                    self._pixel_cache[key] = pixels
            tensors.append(pixels)
        return torch.stack(tensors)


class PadCollator:
    """Right-pads input_ids/labels to the longest sequence in the batch; stacks images."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 1) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: Sequence[dict[str, torch.Tensor | None]]) -> dict[str, torch.Tensor]:
        longest = max(len(item["input_ids"]) for item in items)
        multiple = self.pad_to_multiple_of
        longest = -(-longest // multiple) * multiple
        input_ids = torch.full((len(items), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(items), longest), -100, dtype=torch.long)
        attention_mask = torch.zeros((len(items), longest), dtype=torch.long)
        for row, item in enumerate(items):
            length = len(item["input_ids"])
            input_ids[row, :length] = item["input_ids"]
            labels[row, :length] = item["labels"]
            attention_mask[row, :length] = 1
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
        for key in ("pixel_values", "vision_features"):
            images = [item[key] for item in items if item.get(key) is not None]
            if images:
                batch[key] = torch.cat(images)
        return batch


def count_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Non-padding tokens in a batch, for tokens/s."""
    return int(batch["attention_mask"].sum())
