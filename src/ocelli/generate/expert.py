"""The expert-model interface: images become text for a text-only language model.

The survey's third kind of modality interface, as a baseline for the others: a
captioner (an ocelli model) describes each image, the descriptions replace the image
placeholders of the prompt, and a language model that never sees pixels answers. Its
prompt has the layout of the world's `text_conversations.json` ("description\\nquestion"),
the data stage 0 trains ocelli's text LM on, so that LM is a ready answerer.

    pipeline = ocelli.generate.load("expert:runs/q/align/final,runs/q/text/final")
    pipeline.chat("scene.png", "How many spheres are there?")
    ExpertPipeline.from_dirs(captioner_dir, lm_dir).save(directory)   # load(directory)

It has the pipeline interface evaluation uses (`chat`, `chat_batch`, `score_batch`,
...), so `ocelli eval --model expert:CAPTIONER_DIR,LM_DIR` scores it like any model.
Each distinct image is described once per call (greedy decoding). The caption prompt
may be one string or one per language ({"en": ..., "zh": ...}, the world's two): then
each image is described in the language of the question asked about it (any CJK
character means "zh"), as the text LM saw descriptions and questions in one language.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ocelli.data.chat_template import IMAGE_TOKEN
from ocelli.errors import CheckpointError, ConfigError
from ocelli.utils.io import atomic_write_json

EXPERT_PREFIX = "expert:"
EXPERT_MODEL_TYPE = "ocelli-expert"
# the first of the world's detailed-caption prompts in each language (ocelli.world.text_*)
DEFAULT_CAPTION_PROMPT = {"en": "Describe the image in detail.", "zh": "详细描述这张图片。"}


class ExpertPipeline:
    """A captioner pipeline and a text-only answerer pipeline behind one chat interface."""

    def __init__(
        self,
        captioner: Any,
        answerer: Any,
        caption_prompt: str | dict[str, str] = DEFAULT_CAPTION_PROMPT,
        caption_max_new_tokens: int = 96,
        sources: dict[str, str] | None = None,
    ) -> None:
        if caption_max_new_tokens < 1:
            raise ConfigError(
                f"caption_max_new_tokens must be at least 1, got {caption_max_new_tokens}"
            )
        self.captioner = captioner
        self.answerer = answerer
        if isinstance(caption_prompt, dict) and "en" not in caption_prompt:
            raise ConfigError(
                f"caption_prompt by language needs an 'en' entry (the fallback), got {sorted(caption_prompt)}"
            )
        self.caption_prompt = caption_prompt
        self.caption_max_new_tokens = caption_max_new_tokens
        self.sources = dict(sources or {})

    # No single model reads both images and text; code that looks for one finds None
    # (and must not feed the images to the answerer directly).
    model = None

    @property
    def device(self) -> torch.device:
        return self.answerer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.answerer.dtype

    # --- loading and saving ----------------------------------------------------------
    @classmethod
    def from_dirs(
        cls,
        captioner_dir: str | os.PathLike,
        language_model_dir: str | os.PathLike,
        device: str | torch.device = "cpu",
        **options: Any,
    ) -> ExpertPipeline:
        """The captioner from an ocelli model directory; the answerer from an ocelli
        model or a plain causal-LM directory with its tokenizer (stage 0's text LM)."""
        from ocelli.generate.pipeline import load

        captioner = load(captioner_dir, device=device)
        answerer = load_text_model(language_model_dir, device=device)
        sources = {"captioner": str(captioner_dir), "language_model": str(language_model_dir)}
        return cls(captioner, answerer, sources=sources, **options)

    @classmethod
    def from_spec(cls, spec: str, device: str | torch.device = "cpu") -> ExpertPipeline:
        """`expert:CAPTIONER_DIR,LM_DIR`."""
        parts = spec.removeprefix(EXPERT_PREFIX).split(",")
        if len(parts) != 2 or not all(part.strip() for part in parts):
            raise ConfigError(
                f"{spec!r}: expected {EXPERT_PREFIX}CAPTIONER_DIR,LM_DIR (two directories, one comma)"
            )
        return cls.from_dirs(parts[0].strip(), parts[1].strip(), device=device)

    def save(self, directory: str | os.PathLike) -> Path:
        """A config.json naming both parts, which `ocelli.generate.load` reads back."""
        if set(self.sources) != {"captioner", "language_model"}:
            raise ConfigError("only an ExpertPipeline built from directories can be saved")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            directory / "config.json",
            {
                "model_type": EXPERT_MODEL_TYPE,
                **{key: str(Path(value).resolve()) for key, value in self.sources.items()},
                "caption_prompt": self.caption_prompt,
                "caption_max_new_tokens": self.caption_max_new_tokens,
            },
        )
        return directory

    @classmethod
    def from_config(
        cls, directory: str | os.PathLike, device: str | torch.device = "cpu"
    ) -> ExpertPipeline:
        config = json.loads((Path(directory) / "config.json").read_text(encoding="utf-8"))
        try:
            return cls.from_dirs(
                config["captioner"],
                config["language_model"],
                device=device,
                caption_prompt=config.get("caption_prompt", DEFAULT_CAPTION_PROMPT),
                caption_max_new_tokens=int(config.get("caption_max_new_tokens", 96)),
            )
        except KeyError as exc:
            raise CheckpointError(
                f"{directory}/config.json names no {exc}; re-save it with ExpertPipeline.save()"
            ) from None

    # --- images to text --------------------------------------------------------------
    def describe(self, images: Sequence[Any], questions: Sequence[str] | None = None) -> list[str]:
        """One description per image, in the language of `questions[i]` when the caption
        prompt is given per language; each distinct (image, prompt) is captioned once."""
        prompts = [self.caption_prompt_for(q) for q in (questions or [""] * len(images))]
        keys = [(_image_key(image), prompt) for image, prompt in zip(images, prompts, strict=True)]
        distinct = list(dict.fromkeys(keys))
        first = {key: images[keys.index(key)] for key in distinct}
        captions = self.captioner.chat_batch(
            [first[key] for key in distinct],
            [prompt for _, prompt in distinct],
            max_new_tokens=self.caption_max_new_tokens,
            do_sample=False,
        )
        by_key = dict(zip(distinct, captions, strict=True))
        return [by_key[key] for key in keys]

    def caption_prompt_for(self, question: str) -> str:
        if isinstance(self.caption_prompt, str):
            return self.caption_prompt
        return self.caption_prompt.get(prompt_language(question), self.caption_prompt["en"])

    def text_prompt(self, descriptions: Sequence[str], prompt: str) -> str:
        """The prompt with each image's placeholder replaced by its description; images
        without a placeholder are described in front, as the world's text data has it."""
        pieces = prompt.split(IMAGE_TOKEN)
        placed = min(len(pieces) - 1, len(descriptions))
        text = pieces[0]
        for index, piece in enumerate(pieces[1:]):
            text += (descriptions[index] if index < placed else "") + piece
        in_front = "".join(f"{description}\n" for description in descriptions[placed:])
        return in_front + text.lstrip("\n") if in_front else text

    def _text_prompts(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        per_sample = [_as_list(sample) for sample in images]
        flat = [image for sample in per_sample for image in sample]
        asked = [prompt for sample, prompt in zip(per_sample, prompts, strict=True) for _ in sample]
        descriptions = self.describe(flat, asked) if flat else []
        texts, begin = [], 0
        for sample, prompt in zip(per_sample, prompts, strict=True):
            texts.append(self.text_prompt(descriptions[begin : begin + len(sample)], prompt))
            begin += len(sample)
        return texts

    # --- the pipeline interface ------------------------------------------------------
    def chat(self, images: Any, prompt: str, system: str | None = None, **kwargs: Any) -> str:
        return self.chat_batch([images], [prompt], system=system, **kwargs)[0]

    def chat_batch(
        self,
        images: Sequence[Any],
        prompts: Sequence[str],
        system: str | None = None,
        **generation_kwargs: Any,
    ) -> list[str]:
        if len(images) != len(prompts):
            raise ConfigError(f"{len(prompts)} prompt(s) but {len(images)} image list(s)")
        texts = self._text_prompts(images, prompts)
        return self.answerer.chat_batch([None] * len(texts), texts, system, **generation_kwargs)

    def score_candidates(
        self, images: Any, prompt: str, candidates: Sequence[str], system: str | None = None
    ) -> list[float]:
        return self.score_batch([images], [prompt], [candidates], system)[0]

    def score_batch(
        self,
        images: Sequence[Any],
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        system: str | None = None,
        batch_size: int = 8,
    ) -> list[list[float]]:
        texts = self._text_prompts(images, prompts)
        return self.answerer.score_batch(
            [None] * len(texts), texts, candidates, system, batch_size=batch_size
        )


def load_text_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """A text-only pipeline: an ocelli model directory, or a causal LM saved with its
    tokenizer (what stage 0 writes to RUN/text/final)."""
    from transformers import AutoModelForCausalLM

    from ocelli.data.images import ImageProcessor
    from ocelli.data.processing import OcelliProcessor
    from ocelli.data.tokenizer import load_tokenizer
    from ocelli.generate.pipeline import OcelliPipeline, load

    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"language model directory {path} has no config.json")
    if json.loads(config_file.read_text(encoding="utf-8")).get("model_type") == "ocelli":
        return load(path, device=device)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"could not load the language model in {path}: {exc}") from None
    tokenizer = load_tokenizer(path)
    # no images ever reach it: the image processor and count are placeholders
    processor = OcelliProcessor(tokenizer, ImageProcessor(), num_image_tokens=1, max_length=None)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return OcelliPipeline(model.to(device), processor)


def prompt_language(text: str) -> str:
    """ "zh" when the text holds a CJK ideograph, else "en"."""
    return "zh" if any("\u4e00" <= char <= "\u9fff" for char in text) else "en"


def _as_list(images: Any) -> list[Any]:
    if images is None:
        return []
    return list(images) if isinstance(images, (list, tuple)) else [images]


def _image_key(image: Any) -> Any:
    if isinstance(image, (str, os.PathLike)):
        return ("path", str(Path(image).resolve()))
    return ("object", id(image))
