"""The generation API: load a model directory, then ask it about images.

    pipeline = ocelli.generate.load("runs/quickstart/instruct")
    pipeline.chat("scene.png", "What colour is the cube?")
    pipeline.chat_batch([["a.png"], ["b.png"]], ["How many spheres?", "有几个球？"])
    pipeline.score_candidates("scene.png", "What colour is the cube?", ["red", "blue"])

Prompts go through the processor's chat template, so a model is asked questions exactly
the way it was trained. Batches are left-padded, which keeps every prompt's last token
in the last column and makes batched greedy decoding match one-at-a-time decoding.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ocelli.data.chat_template import IMAGE_TOKEN, normalize_messages
from ocelli.data.images import ImageInput
from ocelli.data.processing import IGNORE_INDEX, PROCESSOR_CONFIG, OcelliProcessor
from ocelli.errors import CheckpointError, ConfigError, OcelliError, PromptError
from ocelli.generate.logits import vcd_generate

Images = ImageInput | Sequence[ImageInput] | None
# Keyword arguments that only mean something when sampling; dropped for greedy and beam
# search so transformers does not warn about flags it ignores.
_SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p", "typical_p")


class OcelliPipeline:
    """A model and its processor, ready to answer questions about images."""

    def __init__(self, model: Any, processor: OcelliProcessor) -> None:
        self.model = model.eval()
        self.processor = processor
        _check_compatible(model, processor)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # --- building conversations -------------------------------------------------------

    def conversation(
        self,
        images: Images,
        prompt: str,
        history: Sequence[dict[str, Any]] | None = None,
        system: str | None = None,
    ) -> list[dict[str, str]]:
        """The messages `chat` sends: system, history, then the prompt as a user turn.

        `images` are all the conversation's images in order. Placeholders in the history
        account for the first ones; if the prompt has no `<image>`, one placeholder per
        image not yet placed is put in front of it."""
        if not isinstance(prompt, str):
            raise PromptError(f"prompt must be a string, got {type(prompt).__name__}")
        messages = normalize_messages(history or [])
        if system is not None:
            if any(message["role"] == "system" for message in messages):
                raise PromptError("the history already has a system message; give system only once")
            messages.insert(0, {"role": "system", "content": system})
        placed = sum(message["content"].count(IMAGE_TOKEN) for message in messages)
        unplaced = len(_as_list(images)) - placed
        if unplaced > 0 and IMAGE_TOKEN not in prompt:
            prompt = f"{IMAGE_TOKEN}\n" * unplaced + prompt
        return messages + [{"role": "user", "content": prompt}]

    # --- generation -------------------------------------------------------------------

    def chat(
        self,
        images: Images,
        prompt: str,
        history: Sequence[dict[str, Any]] | None = None,
        system: str | None = None,
        **generation_kwargs: Any,
    ) -> str:
        """Answer `prompt` about `images` (a path, PIL image, or a list of them).

        Greedy by default, 64 new tokens at most, stopping at `<|im_end|>`. Keyword
        arguments go to transformers' `generate` (`do_sample`, `temperature`, `top_p`,
        `num_beams`, `max_new_tokens`, ...); `seed` makes sampling reproducible;
        `vcd=VCDConfig(...)` decodes with visual contrastive decoding."""
        messages = self.conversation(images, prompt, history, system)
        return self.respond(messages, images, **generation_kwargs)

    def chat_batch(
        self,
        images: Sequence[Images],
        prompts: Sequence[str],
        system: str | None = None,
        **generation_kwargs: Any,
    ) -> list[str]:
        """Answer several prompts at once; `images[i]` belongs to `prompts[i]`."""
        if len(images) != len(prompts):
            raise PromptError(
                f"{len(prompts)} prompt(s) but {len(images)} image list(s); give one per prompt"
            )
        if not prompts:
            return []
        conversations = [
            self.conversation(sample_images, prompt, system=system)
            for sample_images, prompt in zip(images, prompts, strict=True)
        ]
        return self._generate(conversations, [_as_list(i) for i in images], generation_kwargs)

    def respond(
        self, messages: Sequence[dict[str, Any]], images: Images, **generation_kwargs: Any
    ) -> str:
        """The assistant's next turn for a conversation whose placeholders are all placed."""
        return self._generate([messages], [_as_list(images)], generation_kwargs)[0]

    def _generate(
        self,
        conversations: list[Sequence[dict[str, Any]]],
        images: list[list[ImageInput]],
        generation_kwargs: dict[str, Any],
    ) -> list[str]:
        batch = self._to_device(self.processor(conversations, images, padding_side="left"))
        kwargs = self._generation_kwargs(generation_kwargs)
        seed, vcd = kwargs.pop("seed", None), kwargs.pop("vcd", None)
        with torch.inference_mode(), _seeded(seed, self.device):
            if vcd is None:
                output = self.model.generate(**batch, **kwargs)
            else:  # visual contrastive decoding: ocelli.generate.logits
                output = vcd_generate(self.model, batch, vcd, **kwargs)
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        new_tokens = _new_tokens(sequences, batch["input_ids"])
        return [self._answer(row) for row in new_tokens]

    def _generation_kwargs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": 64,
            "num_beams": 1,
            "eos_token_id": self.processor.stop_token_ids,
            "pad_token_id": self.processor.pad_token_id,
        }
        kwargs.update(overrides)
        temperature = kwargs.get("temperature")
        # temperature=0 is the usual way to ask for greedy decoding; a positive one, for sampling.
        kwargs.setdefault("do_sample", temperature is not None and temperature > 0)
        if temperature is not None and temperature <= 0:
            kwargs["do_sample"] = False
        if not kwargs["do_sample"]:
            for name in _SAMPLING_ONLY:
                kwargs.pop(name, None)
        return kwargs

    def _answer(self, token_ids: torch.Tensor) -> str:
        stops = set(self.processor.stop_token_ids)
        ids = token_ids.tolist()
        end = next((i for i, token in enumerate(ids) if token in stops), len(ids))
        return self.processor.decode(ids[:end])

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        moved = {name: value.to(self.device) for name, value in batch.items()}
        if "pixel_values" in moved:
            moved["pixel_values"] = moved["pixel_values"].to(self.dtype)
        return moved

    # --- scoring ----------------------------------------------------------------------

    def score_candidates(
        self,
        images: Images,
        prompt: str,
        candidates: Sequence[str],
        system: str | None = None,
        batch_size: int = 8,
    ) -> list[float]:
        """Sum log-likelihood of each candidate as the whole answer to `prompt`.

        The closing `<|im_end|>` is scored too, so a candidate that is only the start
        of a likelier answer ("red" when the model says "red cube") scores lower."""
        return self.score_batch([images], [prompt], [candidates], system, batch_size)[0]

    def score_batch(
        self,
        images: Sequence[Images],
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        system: str | None = None,
        batch_size: int = 8,
    ) -> list[list[float]]:
        """`score_candidates` for several prompts, `batch_size` prompts per forward pass."""
        if not len(images) == len(prompts) == len(candidates):
            raise PromptError(
                f"{len(prompts)} prompt(s), {len(images)} image list(s) and "
                f"{len(candidates)} candidate list(s); give one of each per prompt"
            )
        scores: list[list[float]] = []
        for begin in range(0, len(prompts), batch_size):
            chunk = slice(begin, begin + batch_size)
            scores += self._score_prompts(images[chunk], prompts[chunk], candidates[chunk], system)
        return scores

    def _score_prompts(
        self,
        images: Sequence[Images],
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        system: str | None,
    ) -> list[list[float]]:
        """Each prompt (with its images) is run once; its candidates then continue from
        its cached keys and values, so k candidates cost one prompt, not k."""
        prefixes, continuations, owners, pixels = [], [], [], []
        for sample_images, prompt, options in zip(images, prompts, candidates, strict=True):
            image_list = _as_list(sample_images)
            messages = self.conversation(image_list, prompt, system=system)
            image_sizes = self.processor.image_sizes(image_list)  # AnyRes counts need them
            rows = [
                self.processor.encode_conversation(
                    messages + [{"role": "assistant", "content": option}],
                    len(image_list),
                    image_sizes,
                )
                for option in options
            ]
            if not rows:
                continue
            shared = _shared_prefix_length(rows)
            prefixes.append(rows[0]["input_ids"][:shared])
            if image_list:
                pixels.append(self.processor.image_processor(image_list))
            continuations += [(row["input_ids"][shared:], row["labels"][shared:]) for row in rows]
            owners += [len(prefixes) - 1] * len(rows)
        if not continuations:
            return [[] for _ in prompts]
        flat = self._score_continuations(prefixes, pixels, continuations, owners)
        scores, start = [], 0
        for options in candidates:
            scores.append(flat[start : start + len(options)])
            start += len(options)
        return scores

    def _score_continuations(
        self,
        prefixes: list[list[int]],
        pixels: list[torch.Tensor],
        continuations: list[tuple[list[int], list[int]]],
        owners: list[int],
    ) -> list[float]:
        batch = self.processor.pad(prefixes, padding_side="left")
        if pixels:
            batch["pixel_values"] = torch.cat(pixels)
        batch = self._to_device(batch)
        prefix_mask = batch["attention_mask"]
        rows = torch.tensor(owners, device=self.device)
        following = self.processor.pad([ids for ids, _ in continuations], padding_side="right")
        labels = torch.full_like(following["input_ids"], IGNORE_INDEX)
        for index, (_, row_labels) in enumerate(continuations):
            labels[index, : len(row_labels)] = torch.tensor(row_labels)
        following = self._to_device(following)
        with torch.inference_mode():
            prompt_out = self.model(
                **batch,
                position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0),
                use_cache=True,
            )
            cache = prompt_out.past_key_values
            cache.batch_select_indices(rows)
            steps = following["input_ids"].shape[1]
            positions = prefix_mask.sum(-1)[rows].unsqueeze(1) + torch.arange(
                steps, device=self.device
            )
            logits = self.model(
                input_ids=following["input_ids"],
                attention_mask=torch.cat([prefix_mask[rows], following["attention_mask"]], 1),
                position_ids=positions,
                past_key_values=cache,
            ).logits.float()
        # Token j of a continuation is predicted by the position before it: the prompt's
        # last one for j = 0, the continuation's own j - 1 after that.
        predicting = torch.cat([prompt_out.logits[rows, -1:].float(), logits[:, :-1]], dim=1)
        log_probs = torch.log_softmax(predicting, dim=-1)
        labels = labels.to(self.device)
        mask = labels != IGNORE_INDEX
        token_scores = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (token_scores * mask).sum(dim=1).tolist()


def _shared_prefix_length(rows: list[dict[str, list[int]]]) -> int:
    """How many leading tokens every row shares and none of them scores: the prompt."""
    first = rows[0]["input_ids"]
    shared = min(len(row["input_ids"]) for row in rows)
    for row in rows:
        scored = next((i for i, label in enumerate(row["labels"]) if label != IGNORE_INDEX), None)
        if scored is not None:
            shared = min(shared, scored)
        same = next(
            (i for i, (a, b) in enumerate(zip(first, row["input_ids"], strict=False)) if a != b),
            shared,
        )
        shared = min(shared, same)
    return max(shared, 1)


def load(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
) -> OcelliPipeline:
    """Load the model and processor saved in `path` (save_pretrained of both). The
    expert-model baseline loads too: `expert:CAPTIONER_DIR,LM_DIR`, or a directory saved
    by `ExpertPipeline.save` (see expert.py)."""
    from ocelli.generate.expert import EXPERT_MODEL_TYPE, EXPERT_PREFIX, ExpertPipeline
    from ocelli.model import OcelliForConditionalGeneration

    if str(path).startswith(EXPERT_PREFIX):
        return ExpertPipeline.from_spec(str(path), device=device)
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"model directory {path} not found; train one with `ocelli train`")
    path = model_directory(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} has no config.json; it does not hold a saved ocelli model")
    if _model_type(path) == EXPERT_MODEL_TYPE:
        return ExpertPipeline.from_config(path, device=device)
    processor = OcelliProcessor.from_pretrained(path)
    if isinstance(dtype, str):
        name, dtype = dtype, getattr(torch, dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ConfigError(
                f"dtype {name!r} is not a torch dtype; use float32, bfloat16 or float16"
            )
    try:
        model = OcelliForConditionalGeneration.from_pretrained(str(path), dtype=dtype)
    except OcelliError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"could not load the model in {path}: {exc}") from exc
    return OcelliPipeline(model.to(device), processor)


def model_directory(path: str | os.PathLike) -> Path:
    """`path`, or its model/ when `path` is a training checkpoint (RUN/<stage>/checkpoints/step-N)."""
    path = Path(path)
    if not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
        path = path / "model"
    in_checkpoint = path.name == "model" and path.parent.name.startswith("step-")
    if in_checkpoint and _model_type(path) == "ocelli" and not (path / PROCESSOR_CONFIG).is_file():
        raise CheckpointError(_checkpoint_without_processor(path))
    return path


def _checkpoint_without_processor(model_dir: Path) -> str:
    """A checkpoint written before checkpoints held the processor: the stage's final/ has
    it, so name the files to copy from there."""
    stage_dir = model_dir.absolute().parent.parent.parent  # of RUN/<stage>/checkpoints/step-N/model
    final = stage_dir / "final"
    if not final.is_dir():
        return (
            f"{model_dir} holds no processor (an older checkpoint); once the stage has "
            f"finished, copy the files of {final} that it lacks into it"
        )
    present = {file.name for file in model_dir.iterdir()}
    files = sorted(
        file.name
        for file in final.iterdir()
        if file.is_file() and file.name not in present and file.name != "trainer_state.json"
    )
    return (
        f"{model_dir} holds no processor (an older checkpoint); copy {', '.join(files)} "
        f"from {final} into it"
    )


def _model_type(path: Path) -> str | None:
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None  # from_pretrained reports what is wrong with it


def _check_compatible(model: Any, processor: OcelliProcessor) -> None:
    config = model.config
    expected = {
        "image_token_id": (getattr(config, "image_token_id", None), processor.image_token_id),
        "num_image_tokens": (getattr(config, "num_image_tokens", None), processor.num_image_tokens),
        "anyres": (
            getattr(config, "anyres", None),
            getattr(processor.image_processor, "anyres", None),
        ),
    }
    for name, (in_model, in_processor) in expected.items():
        if (in_model is not None or name == "anyres") and in_model != in_processor:
            raise CheckpointError(
                f"the model's {name} is {in_model} but the processor's is {in_processor}; "
                "save the processor that was trained with this model beside it"
            )
    vocab_size = model.get_input_embeddings().num_embeddings
    if len(processor.tokenizer) > vocab_size:
        raise CheckpointError(
            f"the tokenizer has {len(processor.tokenizer)} tokens but the model's embeddings only "
            f"{vocab_size}; resize the embeddings (model.resize_token_embeddings) and retrain"
        )


def _as_list(images: Images) -> list[ImageInput]:
    if images is None:
        return []
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


def _new_tokens(sequences: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """What generate added: decoder-only models return the prompt followed by new tokens."""
    prompt_length = input_ids.shape[1]
    if sequences.shape[1] >= prompt_length and torch.equal(sequences[:, :prompt_length], input_ids):
        return sequences[:, prompt_length:]
    return sequences  # generation from embeddings returns only the new tokens


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch for one call without disturbing the caller's random state."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
        torch.manual_seed(seed)
        yield
