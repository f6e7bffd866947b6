"""Stage 0 for the language model: causal LM pretraining on the world's text corpus.

The corpus (captions and question-answer sentences in both languages) is tokenised
once and packed into fixed-length blocks separated by end-of-text tokens, the way
LM pretraining corpora are; every token is a target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ocelli.errors import DataError


class PackedTextDataset(torch.utils.data.Dataset):
    """Fixed-length blocks of a tokenised text file (one document per line)."""

    def __init__(self, corpus_path: str | Path, tokenizer: Any, block_size: int = 128) -> None:
        corpus_path = Path(corpus_path)
        if not corpus_path.is_file():
            raise DataError(f"{corpus_path}: text corpus not found")
        lines = [
            line for line in corpus_path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        if not lines:
            raise DataError(f"{corpus_path}: the corpus is empty")
        eos = tokenizer.eos_token_id
        stream: list[int] = []
        for ids in tokenizer(lines, add_special_tokens=False)["input_ids"]:
            stream.extend(ids)
            stream.append(eos)
        num_blocks = len(stream) // block_size
        if num_blocks == 0:
            raise DataError(f"{corpus_path}: fewer than {block_size} tokens; use more text")
        self.blocks = torch.tensor(stream[: num_blocks * block_size]).view(num_blocks, block_size)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.blocks[index]}


def collate_blocks(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    input_ids = torch.stack([item["input_ids"] for item in items])
    return {
        "input_ids": input_ids,
        "labels": input_ids.clone(),
        "attention_mask": torch.ones_like(input_ids),
    }
