"""Answering many questions about few images: every distinct image prefix (the chat
template's opening and the image tokens) is run through the model once, and each
question about that image continues from its cached keys and values.

An evaluation asks ~16 questions per image, and the 64 image tokens are ~3/4 of every
prompt, so running each prompt whole (what `pipeline.chat_batch` does) spends most of
its time re-reading the same images. Here a batch costs one vision-tower and prefix pass
per distinct image, one pass over the questions' own tokens, then greedy decoding that
drops the rows that ended and stops as soon as every answer has.

Rows are laid out [pad | prefix | pad | question | answer...]: position ids are counted
over the attention mask, so a row reads exactly like its unpadded prompt. Only connectors
that put image tokens in the sequence can share a prefix (one acting inside the language
model's layers needs the image at every step): `supports()` says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ocelli.data.processing import IGNORE_INDEX
from ocelli.errors import OcelliError


class Unshareable(OcelliError, ValueError):
    """The prompts cannot be split into a shared prefix and a continuation."""


FEW_CANDIDATES = 4  # rows of at most this many candidates are scored apart from longer ones


def supports(pipeline: Any) -> bool:
    """Whether `pipeline`'s answers can be computed here: an OcelliPipeline whose way of
    answering is not overridden (a subclass changing decoding must not be stepped
    around) and whose connector puts image tokens in the sequence, a fixed number per
    image (AnyRes counts depend on each image's size, which the prompts here are built
    without: such models answer through the pipeline itself)."""
    from ocelli.generate.pipeline import OcelliPipeline

    if not isinstance(pipeline, OcelliPipeline) or any(
        getattr(type(pipeline), name) is not getattr(OcelliPipeline, name)
        for name in ("chat_batch", "score_batch", "_generate", "_score_prompts")
    ):
        return False
    if getattr(pipeline.processor, "anyres", False):
        return False
    connector = getattr(pipeline.model, "connector", None)
    return connector is not None and not getattr(connector, "acts_inside_language_model", True)


class _Prefixed:
    """A batch's rows after their prompts were read: the cache (one row per prompt), the
    attention mask so far, each row's next position, and the logits after the prompt."""

    def __init__(self, cache: Any, mask: torch.Tensor, next_position: torch.Tensor, logits: Any):
        self.cache, self.mask, self.next_position, self.logits = cache, mask, next_position, logits

    def select(self, rows: torch.Tensor) -> None:
        """Keep (or repeat) rows: cache, mask and positions follow."""
        self.cache.batch_select_indices(rows)
        self.mask, self.next_position = self.mask[rows], self.next_position[rows]
        self.logits = self.logits[rows]


def _split(ids: list[int], image_token_id: int) -> int:
    """Where a prompt's shared part ends: after its last image token (1 without images)."""
    positions = [i for i, token in enumerate(ids) if token == image_token_id]
    return positions[-1] + 1 if positions else 1


def _read_prompts(
    pipeline: Any, images: Sequence[list[Any]], prompts: list[list[int]]
) -> _Prefixed:
    """Run each distinct (images, prefix) once, then every prompt's own tokens on it."""
    processor, model, device = pipeline.processor, pipeline.model, pipeline.device
    image_token_id = processor.image_token_id
    groups: dict[tuple, int] = {}
    prefixes, pixels, owners, suffixes = [], [], [], []
    for sample_images, ids in zip(images, prompts, strict=True):
        cut = _split(ids, image_token_id)
        key = (tuple(str(image) for image in sample_images), tuple(ids[:cut]))
        if key not in groups:
            groups[key] = len(prefixes)
            prefixes.append(ids[:cut])
            if sample_images:
                pixels.append(processor.image_processor(list(sample_images)))
        owners.append(groups[key])
        suffixes.append(ids[cut:])
    batch = pipeline._to_device(processor.pad(prefixes, padding_side="left"))
    if pixels:
        batch["pixel_values"] = torch.cat(pixels).to(device=device, dtype=pipeline.dtype)
    prefix_mask = batch["attention_mask"]
    rows = torch.tensor(owners, device=device)
    out = model(
        **batch,
        position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0),
        use_cache=True,
        logits_to_keep=1,
    )
    cache = out.past_key_values
    cache.batch_select_indices(rows)
    prefix_lengths = prefix_mask.sum(-1)[rows]
    if not any(suffixes):  # every prompt ends at its image: nothing of its own to read
        return _Prefixed(cache, prefix_mask[rows], prefix_lengths, out.logits[rows, -1])
    own = pipeline._to_device(processor.pad(suffixes, padding_side="left"))
    own_mask = own["attention_mask"]
    positions = prefix_lengths.unsqueeze(1) + (own_mask.cumsum(-1) - 1).clamp(min=0)
    mask = torch.cat([prefix_mask[rows], own_mask], dim=1)
    logits = model(
        input_ids=own["input_ids"],
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1]
    return _Prefixed(cache, mask, prefix_lengths + own_mask.sum(-1), logits)


def _prompt_ids(pipeline: Any, images: Sequence[list[Any]], prompts: Sequence[str]) -> list:
    return [
        pipeline.processor.encode_prompt(pipeline.conversation(i, p), len(i))["input_ids"]
        for i, p in zip(images, prompts, strict=True)
    ]


@torch.inference_mode()
def generate_greedy(
    pipeline: Any, images: Sequence[list[Any]], prompts: Sequence[str], max_new_tokens: int
) -> list[str]:
    """Greedy answers (what `pipeline.chat_batch(..., do_sample=False)` gives), each
    ending at a stop token or after `max_new_tokens`."""
    state = _read_prompts(pipeline, images, _prompt_ids(pipeline, images, prompts))
    stops = torch.tensor(pipeline.processor.stop_token_ids, device=pipeline.device)
    alive = torch.arange(len(prompts), device=pipeline.device)  # original row of each row
    answers: list[list[int]] = [[] for _ in prompts]
    logits = state.logits
    for step in range(max_new_tokens):
        tokens = logits.argmax(-1)
        ended = torch.isin(tokens, stops)
        for row, token in zip(alive.tolist(), tokens.tolist(), strict=True):
            answers[row].append(token)
        if step == max_new_tokens - 1 or bool(ended.all()):
            break
        if bool(ended.any()):  # decode only the rows still answering
            keep = (~ended).nonzero().squeeze(1)
            state.select(keep)
            alive, tokens = alive[keep], tokens[keep]
        state.mask = torch.cat([state.mask, state.mask.new_ones((len(alive), 1))], dim=1)
        logits = pipeline.model(
            input_ids=tokens.unsqueeze(1),
            attention_mask=state.mask,
            position_ids=state.next_position.unsqueeze(1),
            past_key_values=state.cache,
            use_cache=True,
        ).logits[:, -1]
        state.next_position = state.next_position + 1
    stop_ids = set(pipeline.processor.stop_token_ids)
    return [pipeline.processor.decode([t for t in row if t not in stop_ids]) for row in answers]


@torch.inference_mode()
def score_candidates(
    pipeline: Any,
    images: Sequence[list[Any]],
    prompts: Sequence[str],
    candidates: Sequence[Sequence[str]],
) -> list[list[float]]:
    """Summed log-probability of each candidate as the whole answer, closing
    `<|im_end|>` included (what `pipeline.score_batch` gives).

    All candidates of a prompt follow it in one row, each attending to the prompt and to
    its own earlier tokens only (a 4D attention mask), so one pass scores them all
    without copying the prompt's keys and values once per candidate. Prompts with few
    candidates (yes/no) and many (ten colours) are scored apart, so the short rows are
    not padded to the long ones (an image shared by both is read twice)."""
    few = [i for i, options in enumerate(candidates) if len(options) <= FEW_CANDIDATES]
    many = [i for i, options in enumerate(candidates) if len(options) > FEW_CANDIDATES]
    if not few or not many:
        return _score_rows(pipeline, images, prompts, candidates)
    scores: list[list[float]] = [[] for _ in prompts]
    for group in (few, many):
        pick = [candidates[i] for i in group]
        part = _score_rows(pipeline, [images[i] for i in group], [prompts[i] for i in group], pick)
        for index, row in zip(group, part, strict=True):
            scores[index] = row
    return scores


def _score_rows(
    pipeline: Any,
    images: Sequence[list[Any]],
    prompts: Sequence[str],
    candidates: Sequence[Sequence[str]],
) -> list[list[float]]:
    processor = pipeline.processor
    prompt_ids = []
    answers: dict[str, tuple[list[int], list[int]]] = {}
    for sample_images, prompt, options in zip(images, prompts, candidates, strict=True):
        messages = pipeline.conversation(sample_images, prompt)
        ids = processor.encode_prompt(messages, len(sample_images))["input_ids"]
        prompt_ids.append(ids)
        for option in options:
            if option not in answers:  # the same tokens after any prompt: see _answer_tokens
                answers[option] = _answer_tokens(processor, messages, sample_images, ids, option)
    if not answers:
        return [[] for _ in prompts]
    state = _read_prompts(pipeline, images, prompt_ids)
    device = pipeline.device
    width = max(sum(len(answers[o][0]) for o in options) for options in candidates)
    shape = (len(prompts), width)
    tokens = torch.full(shape, processor.pad_token_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    segment = torch.full(shape, -1, dtype=torch.long)  # which candidate a column holds
    offset = torch.zeros(shape, dtype=torch.long)  # its place in that candidate
    for row, options in enumerate(candidates):
        column = 0
        for index, option in enumerate(options):
            ids, row_labels = answers[option]
            span = slice(column, column + len(ids))
            tokens[row, span], labels[row, span] = torch.tensor(ids), torch.tensor(row_labels)
            segment[row, span], offset[row, span] = index, torch.arange(len(ids))
            column += len(ids)
    tokens, labels, segment, offset = (t.to(device) for t in (tokens, labels, segment, offset))
    own = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
    own &= offset[:, None, :] <= offset[:, :, None]
    prompt_part = state.mask.bool()[:, None, :].expand(-1, width, -1)
    allowed = torch.cat([prompt_part, own], dim=2).unsqueeze(1)
    # Additive (0 or the lowest value): eager attention adds the mask, sdpa takes either.
    mask = torch.zeros(allowed.shape, dtype=pipeline.dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(pipeline.dtype).min)
    logits = pipeline.model(
        input_ids=tokens,
        attention_mask=mask,
        position_ids=state.next_position.unsqueeze(1) + offset,
        past_key_values=state.cache,
    ).logits.float()
    # Token j of a candidate is predicted by the one before it, its first by the prompt.
    previous = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    first = offset == 0
    predicting = torch.where(first[..., None], state.logits.float()[:, None, :], previous)
    log_probs = torch.log_softmax(predicting, dim=-1)
    scored = labels != IGNORE_INDEX
    token_scores = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * scored
    most = max(len(options) for options in candidates)
    sums = torch.zeros((len(prompts), most + 1), device=device, dtype=token_scores.dtype)
    sums.scatter_add_(1, torch.where(segment >= 0, segment, most), token_scores)
    return [sums[row, : len(options)].tolist() for row, options in enumerate(candidates)]


def _answer_tokens(
    processor: Any, messages: list, images: list[Any], prompt_ids: list[int], option: str
) -> tuple[list[int], list[int]]:
    """The tokens and labels of `option` as the reply after `prompt_ids`. They do not
    depend on the prompt: the template closes the user turn with special tokens and
    opens the reply with the same assistant header after every prompt."""
    row = processor.encode_conversation(
        messages + [{"role": "assistant", "content": option}], len(images)
    )
    start = len(prompt_ids)
    if row["input_ids"][:start] != prompt_ids or any(
        label != IGNORE_INDEX for label in row["labels"][:start]
    ):
        raise Unshareable("the answer changes how the prompt before it is tokenised")
    labels = row["labels"][start:]
    end = max(i for i, label in enumerate(labels) if label != IGNORE_INDEX) + 1
    return row["input_ids"][start : start + end], labels[:end]  # nothing scored after end
