"""Stage 0 for the vision encoder: pretraining on the world's images from scratch.

Two objectives, weighted by `VisionPretrainConfig`:
- contrastive (SigLIP's pairwise sigmoid loss) between the pooled image features and a
  small text tower reading the image's caption, as CLIP/SigLIP are pretrained;
- dense scene-graph supervision: every output token predicts the colour, shape and
  size of the object whose centre falls in its cell (or "nothing"). The world knows
  exactly where each object is, so each token can be told what it is looking at. This
  is what makes the tokens object-centric quickly, and object-centric tokens are what a
  small language model can learn to read in minutes (docs/training-small-mllms.md).

The encoder is saved as a standard Hugging Face checkpoint, so later stages load it
through the same local-directory path a user with real CLIP or SigLIP weights takes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NOTHING = 0  # class index of "no object centre in this cell" in every dense head


@dataclass
class VisionPretrainConfig:
    contrastive_weight: float = 1.0
    dense_weight: float = 1.0
    text_hidden_size: int = 128
    text_layers: int = 2
    embed_dim: int = 128
    caption_field: str = "detailed"


class SceneTargets:
    """Turns scene graphs into per-cell class targets on the encoder's token grid."""

    def __init__(self, shapes: list[str], colors: list[str], sizes: list[str]) -> None:
        self.shapes, self.colors, self.sizes = list(shapes), list(colors), list(sizes)

    @property
    def num_classes(self) -> dict[str, int]:
        return {
            "color": len(self.colors) + 1,
            "shape": len(self.shapes) + 1,
            "size": len(self.sizes) + 1,
        }

    def __call__(self, scene: dict[str, Any], grid: int) -> dict[str, torch.Tensor]:
        targets = {name: torch.zeros(grid * grid, dtype=torch.long) for name in self.num_classes}
        occupied_area = torch.zeros(grid * grid)
        width, height = scene["width"], scene["height"]
        for obj in scene["objects"]:
            x0, y0, x1, y1 = obj["bbox"]
            col = min(int((x0 + x1) / 2 / width * grid), grid - 1)
            row = min(int((y0 + y1) / 2 / height * grid), grid - 1)
            cell = row * grid + col
            area = (x1 - x0) * (y1 - y0)
            if area <= occupied_area[cell]:
                continue  # two centres in one cell: the larger object owns it
            occupied_area[cell] = area
            targets["color"][cell] = self.colors.index(obj["color"]) + 1
            targets["shape"][cell] = self.shapes.index(obj["shape"]) + 1
            targets["size"][cell] = self.sizes.index(obj["size"]) + 1
        return targets


class CaptionTower(nn.Module):
    """A small transformer text encoder for the contrastive objective (discarded after)."""

    def __init__(
        self, vocab_size: int, hidden: int, layers: int, embed_dim: int, max_len: int = 256
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden)
        self.position = nn.Embedding(max_len, hidden)
        block = nn.TransformerEncoderLayer(
            hidden,
            nhead=max(1, hidden // 32),
            dim_feedforward=hidden * 4,
            batch_first=True,
            norm_first=True,
            dropout=0.0,
        )
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.project = nn.Linear(hidden, embed_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.embed(input_ids) + self.position(positions)
        hidden = self.encoder(hidden, src_key_padding_mask=attention_mask == 0)
        weights = attention_mask.unsqueeze(-1).float()
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.project(pooled)


class VisionPretrainModel(nn.Module):
    """Vision encoder + dense heads + caption tower; `forward(**batch).loss` for the loop."""

    def __init__(
        self,
        encoder: Any,
        vocab_size: int,
        num_classes: dict[str, int],
        config: VisionPretrainConfig,
    ) -> None:
        super().__init__()
        self.encoder = encoder  # an ocelli.model vision adapter: .model, .features(), .hidden_size
        self.vision = encoder.model
        self.config = config
        dim = encoder.hidden_size
        self.heads = nn.ModuleDict({name: nn.Linear(dim, n) for name, n in num_classes.items()})
        self.image_project = nn.Linear(dim, config.embed_dim)
        self.text = CaptionTower(
            vocab_size, config.text_hidden_size, config.text_layers, config.embed_dim
        )
        # SigLIP's initialisation: temperature 10, bias -10 (few positives per row)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0))

    def forward(
        self,
        pixel_values: torch.Tensor,
        caption_ids: torch.Tensor,
        caption_mask: torch.Tensor,
        **targets: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        tokens = self.encoder.features(pixel_values)  # (B, N, D), no CLS
        losses = {}
        if self.config.dense_weight > 0:
            losses["dense"] = self.dense_loss(tokens, targets)
        if self.config.contrastive_weight > 0:
            image = F.normalize(self.image_project(tokens.mean(1)), dim=-1)
            text = F.normalize(self.text(caption_ids, caption_mask), dim=-1)
            logits = image @ text.T * self.logit_scale.exp() + self.logit_bias
            labels = 2 * torch.eye(len(image), device=image.device) - 1
            losses["contrastive"] = -F.logsigmoid(labels * logits).sum() / len(image)
        loss = self.config.dense_weight * losses.get(
            "dense", 0.0
        ) + self.config.contrastive_weight * losses.get("contrastive", 0.0)
        return {"loss": loss, **{f"{k}_loss": v.detach() for k, v in losses.items()}}

    def dense_loss(self, tokens: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy per head, object cells and empty cells weighted equally: with
        1-4 objects on 64 cells, an unweighted loss is satisfied by predicting "nothing"
        everywhere and the encoder barely learns what the objects are."""
        occupied = (targets["color"] != NOTHING).flatten().float()
        weights = occupied / occupied.sum().clamp(min=1) + (1 - occupied) / (
            1 - occupied
        ).sum().clamp(min=1)
        per_head = [
            (
                F.cross_entropy(
                    head(tokens).flatten(0, 1), targets[name].flatten(), reduction="none"
                )
                * weights
            ).sum()
            / 2
            for name, head in self.heads.items()
        ]
        return torch.stack(per_head).mean()

    @torch.no_grad()
    def dense_accuracy(
        self, pixel_values: torch.Tensor, **targets: torch.Tensor
    ) -> dict[str, float]:
        """Per head, the fraction of object cells classified right."""
        tokens = self.encoder.features(pixel_values)
        occupied = targets["color"] != NOTHING
        return {
            name: round(
                ((head(tokens).argmax(-1) == targets[name]) & occupied).sum().item()
                / max(int(occupied.sum()), 1),
                4,
            )
            for name, head in self.heads.items()
        }


class SceneCaptionDataset(torch.utils.data.Dataset):
    """Images with their dense targets and one caption each, from a world directory."""

    def __init__(
        self,
        data_dir: str | Path,
        image_processor: Any,
        tokenizer: Any,
        targets: SceneTargets,
        grid: int,
        caption_field: str = "detailed",
        max_caption_tokens: int = 96,
    ) -> None:
        from ocelli.data.images import load_image

        data_dir = Path(data_dir)
        scenes = [json.loads(line) for line in (data_dir / "scenes.jsonl").open(encoding="utf-8")]
        captions = {}
        for line in (data_dir / "captions.jsonl").open(encoding="utf-8"):
            row = json.loads(line)
            captions.setdefault(row["image"], row[caption_field])  # first language listed
        self.pixels = image_processor([load_image(data_dir / s["image"]) for s in scenes])
        self.targets = [targets(scene, grid) for scene in scenes]
        self.caption_ids = [
            tokenizer(captions[s["image"]], add_special_tokens=False)["input_ids"][
                :max_caption_tokens
            ]
            for s in scenes
        ]
        self.pad_token_id = tokenizer.pad_token_id

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "pixel_values": self.pixels[index],
            "caption_ids": self.caption_ids[index],
            **self.targets[index],
        }

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(item["caption_ids"]) for item in items)
        ids = torch.full((len(items), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(items), longest), dtype=torch.long)
        for row, item in enumerate(items):
            ids[row, : len(item["caption_ids"])] = torch.as_tensor(item["caption_ids"])
            mask[row, : len(item["caption_ids"])] = 1
        batch = {
            "pixel_values": torch.stack([item["pixel_values"] for item in items]),
            "caption_ids": ids,
            "caption_mask": mask,
        }
        for name in ("color", "shape", "size"):
            batch[name] = torch.stack([item[name] for item in items])
        return batch
