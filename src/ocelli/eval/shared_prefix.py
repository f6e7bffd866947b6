"""Answering many questions about few images: every distinct image prefix (the chat
template's opening and the image tokens) is run through the model once, and each
question about that image continues from its cached keys and values.

An evaluation asks ~16 questions per image, and the 64 image tokens are ~3/4 of every
prompt, so running each prompt whole (what `pipeline.chat_batch` does) spends most of
its time re-reading the same images. Here a batch costs one vision-tower and prefix pass
per distinct image, one pass over the questions' own tokens, then greedy decoding that
drops the rows that ended and stops as soon as every answer has.

Rows are laid out [pad | prefix | pad | question | answer...]: position ids are counted
over the attention mask, so a row reads exactly like its unpadded prompt. Ranking closed
answers (`score_candidates`) reads a batch's image prefixes once too, then puts each
question and all its candidate answers in one row under a 4D attention mask.

Only connectors that put image tokens in the sequence can share a prefix (one acting
inside the language model's layers needs the image at every step): `supports()` says
which.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from ocelli.data.processing import IGNORE_INDEX
from ocelli.errors import OcelliError


class Unshareable(OcelliError, ValueError):
    """The prompts cannot be split into a shared prefix and a continuation."""


# A forward pass's fixed cost in padded tokens' worth of compute: rows are cut into
# separately padded groups only when that saves more (small models on CPU; see _groups).
PASS_COST = 96
SUFFIX, PADDING = -2, -1  # what a scoring row's column holds, besides candidate k >= 0


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


class _Prefixes:
    """Each distinct (images, prefix) of a batch after one pass: its cache and attention
    mask (one row per distinct prefix, left-padded), the logits after it, which row each
    prompt starts from, and each prompt's own tokens after its prefix."""

    def __init__(
        self, cache: Any, mask: torch.Tensor, logits: torch.Tensor, owners: list, suffixes: list
    ) -> None:
        self.cache, self.mask, self.logits = cache, mask, logits
        self.owners, self.suffixes = owners, suffixes


def _split(ids: list[int], image_token_id: int) -> int:
    """Where a prompt's shared part ends: after its last image token (1 without images)."""
    positions = [i for i, token in enumerate(ids) if token == image_token_id]
    return positions[-1] + 1 if positions else 1


def _read_prefixes(
    pipeline: Any, images: Sequence[list[Any]], prompts: list[list[int]], own_tokens: int = 0
) -> _Prefixes:
    """Run each distinct (images, prefix) once; every prompt keeps at least `own_tokens`
    of its tokens out of its prefix."""
    processor, device = pipeline.processor, pipeline.device
    groups: dict[tuple, int] = {}
    prefixes, pixels, owners, suffixes = [], [], [], []
    for sample_images, ids in zip(images, prompts, strict=True):
        cut = min(_split(ids, processor.image_token_id), len(ids) - own_tokens)
        if cut < 1:
            raise Unshareable(f"a prompt of {len(ids)} token(s) leaves no prefix to share")
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
    mask = batch["attention_mask"]
    out = pipeline.model(
        **batch,
        position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
        use_cache=True,
        logits_to_keep=1,
    )
    return _Prefixes(out.past_key_values, mask, out.logits[:, -1], owners, suffixes)


def _read_prompts(
    pipeline: Any, images: Sequence[list[Any]], prompts: list[list[int]]
) -> _Prefixed:
    """Run each distinct (images, prefix) once, then every prompt's own tokens on it."""
    processor, model, device = pipeline.processor, pipeline.model, pipeline.device
    read = _read_prefixes(pipeline, images, prompts)
    rows = torch.tensor(read.owners, device=device)
    cache = read.cache
    cache.batch_select_indices(rows)
    prefix_mask = read.mask[rows]
    prefix_lengths = prefix_mask.sum(-1)
    if not any(read.suffixes):  # every prompt ends at its image: nothing of its own to read
        return _Prefixed(cache, prefix_mask, prefix_lengths, read.logits[rows])
    own = pipeline._to_device(processor.pad(read.suffixes, padding_side="left"))
    own_mask = own["attention_mask"]
    positions = prefix_lengths.unsqueeze(1) + (own_mask.cumsum(-1) - 1).clamp(min=0)
    mask = torch.cat([prefix_mask, own_mask], dim=1)
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

    Each distinct image prefix is read once for the batch. Then one row per prompt holds
    its own tokens followed by all its candidates, each candidate attending to the
    prompt and to its own earlier tokens only (a 4D attention mask), so one pass reads
    the question and scores every candidate. A candidate's last token (`<|im_end|>`)
    predicts nothing scored, so it is never an input: a one-token answer costs one
    column. Rows are cut into groups of similar lengths (`_groups`), so a yes/no row is
    not padded to a ten-colour one."""
    scores: list[list[float]] = [[] for _ in prompts]
    asked = [index for index, options in enumerate(candidates) if options]
    if not asked:
        return scores
    images, prompts = [images[i] for i in asked], [prompts[i] for i in asked]
    options = [candidates[i] for i in asked]
    prompt_ids = _prompt_ids(pipeline, images, prompts)
    answers = _answers(pipeline, images, prompts, prompt_ids, options)
    read = _read_prefixes(pipeline, images, prompt_ids, own_tokens=1)
    rows = [
        _Row(suffix, [answers[option] for option in row_options])
        for suffix, row_options in zip(read.suffixes, options, strict=True)
    ]
    groups = _groups(rows)
    for number, group in enumerate(groups):
        # Selecting rows replaces the cache's tensors: every group but the last works on
        # a copy, so the next one still finds the prefixes.
        cache = read.cache if number == len(groups) - 1 else copy.deepcopy(read.cache)
        owners = torch.tensor([read.owners[i] for i in group], device=pipeline.device)
        cache.batch_select_indices(owners)
        values = _score_group(pipeline, cache, read.mask[owners], [rows[i] for i in group])
        for index, row_scores in zip(group, values, strict=True):
            scores[asked[index]] = row_scores
    return scores


class _Row:
    """One prompt's tokens after its prefix, and its candidates' (token ids, labels)."""

    def __init__(self, suffix: list[int], answers: list[tuple[list[int], list[int]]]) -> None:
        self.suffix, self.answers = suffix, answers
        # Each candidate's tokens but the last are inputs: see score_candidates.
        self.width = sum(len(ids) - 1 for ids, _ in answers)


def _answers(
    pipeline: Any,
    images: Sequence[list[Any]],
    prompts: Sequence[str],
    prompt_ids: list[list[int]],
    candidates: Sequence[Sequence[str]],
) -> dict[str, tuple[list[int], list[int]]]:
    """Every distinct candidate's (token ids, labels), tokenised once per batch."""
    answers: dict[str, tuple[list[int], list[int]]] = {}
    for sample_images, prompt, ids, options in zip(
        images, prompts, prompt_ids, candidates, strict=True
    ):
        messages = None
        for option in options:
            if option not in answers:  # the same tokens after any prompt: see _answer_tokens
                messages = messages or pipeline.conversation(sample_images, prompt)
                answers[option] = _answer_tokens(
                    pipeline.processor, messages, sample_images, ids, option
                )
    return answers


def _groups(rows: list[_Row]) -> list[list[int]]:
    """Rows in groups, each group one forward pass padded to its longest suffix and its
    widest candidates: rows sorted by candidate width are cut where the padded tokens
    saved outweigh a pass's fixed cost (dynamic programming over the cut points)."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i].width, len(rows[i].suffix)))
    best = [0.0] + [float("inf")] * len(order)  # cost of the first j rows
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        widest = rows[order[end - 1]].width
        longest = 0
        for begin in range(end - 1, -1, -1):
            longest = max(longest, len(rows[order[begin]].suffix))
            cost = best[begin] + (end - begin) * (longest + widest) + PASS_COST
            if cost < best[end]:
                best[end], cut[end] = cost, begin
    groups, end = [], len(order)
    while end:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


class _Layout:
    """A group's rows [pad | suffix | candidate 0 | candidate 1 | ... | pad] as lists:
    the tokens, what each column holds (SUFFIX, PADDING or the candidate's index), its
    position after the prefix, and each scored token as (row, the column predicting it,
    its id, its candidate). Suffixes are left-padded to end at column `trunk - 1`, whose
    output predicts every candidate's first token."""

    def __init__(self, rows: list[_Row], pad_token_id: int) -> None:
        self.trunk = max(len(row.suffix) for row in rows)
        self.width = self.trunk + max(row.width for row in rows)
        self.tokens: list[list[int]] = []
        self.segments: list[list[int]] = []
        self.positions: list[list[int]] = []
        self.scored: list[tuple[int, int, int, int]] = []
        for row_index, row in enumerate(rows):
            pad = self.trunk - len(row.suffix)
            tokens = [pad_token_id] * pad + row.suffix
            segments = [PADDING] * pad + [SUFFIX] * len(row.suffix)
            positions = [0] * pad + list(range(len(row.suffix)))
            for candidate, (ids, labels) in enumerate(row.answers):
                column = len(tokens)
                for offset, label in enumerate(labels):
                    if label != IGNORE_INDEX:  # token `offset` is predicted by the one before
                        predicting = column + offset - 1 if offset else self.trunk - 1
                        self.scored.append((row_index, predicting, label, candidate))
                tokens += ids[:-1]
                segments += [candidate] * (len(ids) - 1)
                positions += range(len(row.suffix), len(row.suffix) + len(ids) - 1)
            fill = self.width - len(tokens)
            self.tokens.append(tokens + [pad_token_id] * fill)
            self.segments.append(segments + [PADDING] * fill)
            self.positions.append(positions + [0] * fill)


def _score_group(
    pipeline: Any, cache: Any, prefix_mask: torch.Tensor, rows: list[_Row]
) -> list[list[float]]:
    """Every candidate's score for `rows`, in one forward pass after their prefixes."""
    device = pipeline.device
    layout = _Layout(rows, pipeline.processor.pad_token_id)
    segment = torch.tensor(layout.segments, device=device)
    columns = torch.arange(layout.width, device=device)
    # A column sees the prompt's suffix up to itself and its own candidate's earlier
    # tokens; never padding or another candidate.
    keys = segment[:, None, :]
    own = (columns[None, :, None] >= columns[None, None, :]) & (keys != PADDING)
    own &= (keys == SUFFIX) | (keys == segment[:, :, None])
    prompt_part = prefix_mask.bool()[:, None, :].expand(-1, layout.width, -1)
    allowed = torch.cat([prompt_part, own], dim=2).unsqueeze(1)
    # Additive (0 or the lowest value): eager attention adds the mask, sdpa takes either.
    mask = torch.zeros(allowed.shape, dtype=pipeline.dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(pipeline.dtype).min)
    kept = layout.width - layout.trunk + 1  # the LM head runs from the suffix's end only
    logits = pipeline.model(
        input_ids=torch.tensor(layout.tokens, device=device),
        attention_mask=mask,
        position_ids=prefix_mask.sum(-1, keepdim=True)
        + torch.tensor(layout.positions, device=device),
        past_key_values=cache,
        logits_to_keep=kept,
    ).logits
    row, column, label, candidate = torch.tensor(layout.scored, device=device).unbind(1)
    predicting = logits[row, column - (layout.width - kept)].float()
    token_scores = torch.log_softmax(predicting, dim=-1).gather(1, label[:, None]).squeeze(1)
    sums = torch.zeros((len(rows), max(len(r.answers) for r in rows)), device=device)
    sums.index_put_((row, candidate), token_scores, accumulate=True)
    return [sums[index, : len(r.answers)].tolist() for index, r in enumerate(rows)]


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
