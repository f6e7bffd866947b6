"""The batching engine: concurrent requests are decoded together, one token per step.

Iteration-level (continuous) batching with a KV cache. One worker thread owns the model
and loops:

1. admit waiting sequences while the batch has room (`max_batch_size`), and prefill
   them together: their prompts, left-padded into a forward pass with their images (one
   pass per group of similar lengths, `length_groups`), fill a fresh KV cache whose rows
   are then copied into the running batch's preallocated cache (kv.py). While a batch
   decodes, newcomers may wait a few steps (`admission_wait_steps`) for others to share
   that forward pass: clients that send their next request when the last one ends
   otherwise arrive, and are prefilled, alone;
2. run one decode step for every running row: each row's last token goes in, one
   forward pass over the whole batch reads the shared cache and gives each row its next
   token (per-row greedy or sampling, sampling.py);
3. rows that finished (a stop token, a stop string, max_tokens, or a client that went
   away) leave the batch before the next step; their slots go to waiting sequences.

So requests join and leave between decode steps and never wait for each other's
answers to end. Because each row keeps its own positions and the padding is masked,
a row's greedy tokens are those it would get decoded alone.

Results reach the asyncio side through a `Handle`: text deltas, then a `Completion`;
an iteration's events for all rows go to the event loop in one call, not one per token.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ocelli.data.processing import OcelliProcessor
from ocelli.errors import PromptError
from ocelli.serve.errors import InternalError, ShuttingDown
from ocelli.serve.kv import BatchCache, new_cache, prefill_positions
from ocelli.serve.sampling import SamplingParams, next_tokens
from ocelli.serve.text import StreamedAnswer

log = logging.getLogger("ocelli.serve")
THROUGHPUT_WINDOW_S = 10.0
# What one more prefill pass costs beyond its tokens, in prompt tokens' worth of work: a
# pass of one 89-token prompt took 6.6 ms of CPU, each further such prompt 3.8 ms more
# (quickstart model, one thread), so the pass itself costs about 64 tokens.
PREFILL_PASS_TOKENS = 64


@dataclass
class Prompt:
    """A tokenized prompt: image placeholders already expanded, images preprocessed."""

    input_ids: list[int]
    pixel_values: torch.Tensor | None = None  # (num_images, 3, H, W)


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int


class Handle:
    """The asyncio side of one sequence: its text deltas, then its Completion."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.cancelled = False
        self.completion: Completion | None = None

    def cancel(self) -> None:
        """Stop generating; the engine frees the slot before its next step."""
        self.cancelled = True

    async def deltas(self) -> AsyncIterator[str]:
        """Text as it is generated; sets `completion` when the sequence ends."""
        async for batch in self.delta_batches():
            for delta in batch:
                yield delta

    async def delta_batches(self) -> AsyncIterator[list[str]]:
        """Text as it is generated, in lists of the deltas that were waiting together: a
        reader that falls behind the engine catches up in one go (a stream then sends them
        in one write). `completion` is set before the last list, which may be empty."""
        while self.completion is None:
            events = [await self._events.get()]
            while not self._events.empty():
                events.append(self._events.get_nowait())
            batch = []
            for kind, value in events:
                if kind == "delta":
                    batch.append(value)
                elif kind == "done":
                    self.completion = value
                else:
                    if batch:
                        yield batch
                    raise value
            yield batch

    async def result(self) -> Completion:
        async for _ in self.deltas():
            pass
        assert self.completion is not None
        return self.completion

    def _send(self, kind: str, value: Any) -> None:
        """Called from another thread."""
        _deliver_threadsafe(self._loop, [(self, kind, value)])


def _deliver_threadsafe(
    loop: asyncio.AbstractEventLoop, events: list[tuple[Handle, str, Any]]
) -> None:
    """Hand `events` to their handles on `loop` with one wake-up of the loop."""
    try:
        loop.call_soon_threadsafe(_deliver, events)
    except RuntimeError:  # the event loop is closed: nobody is listening any more
        for handle, _, _ in events:
            handle.cancelled = True


def _deliver(events: list[tuple[Handle, str, Any]]) -> None:
    for handle, kind, value in events:
        handle._events.put_nowait((kind, value))


@dataclass
class _Sequence:
    prompt: Prompt
    params: SamplingParams
    handle: Handle
    max_tokens: int
    answer: StreamedAnswer
    generator: torch.Generator | None = None
    token_ids: list[int] = field(default_factory=list)
    finished: bool = False


class Engine:
    """Decodes many sequences at once with one model; start() runs its worker thread."""

    def __init__(
        self,
        model: Any,
        processor: OcelliProcessor,
        max_batch_size: int = 8,
        admission_wait_steps: int = 0,
    ) -> None:
        self.model = model.eval()
        self.processor = processor
        self.max_batch_size = max_batch_size
        # While rows decode, newcomers wait up to this many steps for company to share
        # their prefill, unless they already fill half the batch.
        self.admission_wait_steps = admission_wait_steps
        self._held_steps = 0
        self._outbox: list[tuple[Handle, str, Any]] = []
        self._text_config = getattr(model.config, "text_config", model.config)
        self._context = getattr(self._text_config, "max_position_embeddings", None)
        self._stop_ids = set(processor.stop_token_ids)
        # With sdpa a decode step's mask is just each row's padding, which the engine can
        # hand over ready-made: transformers would rebuild it from the 2D mask every step.
        self._ready_mask = getattr(self._text_config, "_attn_implementation", None) == "sdpa"
        self._device = next(model.parameters()).device
        self._dtype = next(model.parameters()).dtype
        self._cond = threading.Condition()
        self._waiting: collections.deque[_Sequence] = collections.deque()
        self._rows: list[_Sequence] = []
        self._batch: BatchCache | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        new_cache(self._text_config)  # fail now, not at the first request, on unsupported LMs
        self.prompt_tokens_total = 0
        self.generated_tokens_total = 0
        self._recent: collections.deque[tuple[float, int]] = collections.deque()

    # --- the asyncio side ---------------------------------------------------------------

    def start(self) -> Engine:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ocelli-engine", daemon=True)
            self._thread.start()
        return self

    def submit(self, prompt: Prompt, params: SamplingParams) -> Handle:
        """Queue a sequence; call from a running event loop, which receives its results."""
        max_tokens = params.max_tokens
        if self._context is not None:
            room = self._context - len(prompt.input_ids)
            if room <= 0:
                raise PromptError(
                    f"the prompt is {len(prompt.input_ids)} tokens, which fills the model's "
                    f"context of {self._context}; shorten it or send fewer images"
                )
            max_tokens = min(max_tokens, room)
        handle = Handle(asyncio.get_running_loop())
        sequence = _Sequence(
            prompt,
            params,
            handle,
            max_tokens,
            StreamedAnswer(self._decode, params.stop),
            params.generator(),
        )
        with self._cond:
            if self._stopping:
                raise ShuttingDown("the server is shutting down; retry on another instance")
            self._waiting.append(sequence)
            self._cond.notify()
        return handle

    @property
    def num_running(self) -> int:
        return len(self._rows)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    def tokens_per_second(self) -> float:
        """Generated tokens per second over the last few seconds."""
        now = time.monotonic()
        recent = [(t, n) for t, n in list(self._recent) if now - t <= THROUGHPUT_WINDOW_S]
        return sum(n for _, n in recent) / THROUGHPUT_WINDOW_S

    def shutdown(self, timeout: float | None = None) -> bool:
        """Finish what is queued and running, then stop; False if `timeout` ran out first."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the worker thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            joiners = self._admit()
            if joiners is None:
                return
            try:
                with torch.inference_mode():
                    if joiners:
                        self._prefill(joiners)
                        self._flush()  # first tokens go out before the decode step
                    if self._rows:
                        self._decode_step()
            except Exception as exc:  # noqa: BLE001 - one failed batch must not stop the server
                log.exception(
                    "generation failed; failing the %d sequence(s) in the batch", len(self._rows)
                )
                self._fail(joiners + self._rows, exc)
            self._flush()

    def _admit(self) -> list[_Sequence] | None:
        """Waiting sequences that fit in the batch; blocks while idle; None: stop."""
        with self._cond:
            while not self._waiting and not self._rows and not self._stopping:
                self._cond.wait()
            if self._stopping and not self._waiting and not self._rows:
                return None
            if self._hold_admissions():
                self._held_steps += 1
                return []
            self._held_steps = 0
            joiners: list[_Sequence] = []
            while self._waiting and len(self._rows) + len(joiners) < self.max_batch_size:
                sequence = self._waiting.popleft()
                if not sequence.handle.cancelled:
                    joiners.append(sequence)
            return joiners

    def _hold_admissions(self) -> bool:
        """Whether waiting sequences should wait another step for more to prefill with.

        A prefill costs a forward pass of its own, so newcomers that trickle in one by
        one (each client sending its next request when its last one ends) are cheaper
        prefilled together. Never when the batch is idle, full of newcomers, or draining."""
        if not self._rows or not self._waiting or self._stopping:
            return False
        enough = len(self._waiting) >= max(1, self.max_batch_size // 2)
        return not enough and self._held_steps < self.admission_wait_steps

    def _prefill(self, joiners: list[_Sequence]) -> None:
        """Prefill newcomers in passes of similar prompt lengths, the longest first (the
        batch's cache then widens once): a left-padded pass computes every row at its
        longest prompt's length, so one long prompt would make the rest pay for padding."""
        groups = length_groups([len(s.prompt.input_ids) for s in joiners])
        for group in reversed(groups):
            self._prefill_together([joiners[index] for index in group])
        self._drop_finished()

    def _prefill_together(self, joiners: list[_Sequence]) -> None:
        batch = self.processor.pad([s.prompt.input_ids for s in joiners], padding_side="left")
        mask = batch["attention_mask"].to(self._device)
        images = [s.prompt.pixel_values for s in joiners if s.prompt.pixel_values is not None]
        pixel_values = torch.cat(images).to(self._device, self._dtype) if images else None
        cache = new_cache(self._text_config)
        output = self.model(
            input_ids=batch["input_ids"].to(self._device),
            pixel_values=pixel_values,
            attention_mask=mask,
            position_ids=prefill_positions(mask),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        if self._batch is None:
            self._batch = BatchCache(self.max_batch_size)
        self._batch.join(cache, mask)
        self._rows += joiners
        self.prompt_tokens_total += sum(len(s.prompt.input_ids) for s in joiners)
        self._advance(joiners, output.logits[:, -1])

    def _decode_step(self) -> None:
        assert self._batch is not None
        input_ids = torch.tensor([[s.token_ids[-1]] for s in self._rows], device=self._device)
        mask, positions = self._batch.step_inputs()
        if self._ready_mask:
            mask = mask.bool()[:, None, None, :]  # (rows, heads, queries, keys), broadcast
        output = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=self._batch.cache,
            use_cache=True,
        )
        self._advance(self._rows, output.logits[:, -1])
        self._drop_finished()

    def _advance(self, sequences: list[_Sequence], logits: torch.Tensor) -> None:
        tokens = next_tokens(
            logits, [s.params for s in sequences], [s.generator for s in sequences]
        )
        for sequence, token in zip(sequences, tokens, strict=True):
            self._accept(sequence, token)
        self.generated_tokens_total += len(sequences)
        self._recent.append((time.monotonic(), len(sequences)))
        while self._recent and time.monotonic() - self._recent[0][0] > THROUGHPUT_WINDOW_S:
            self._recent.popleft()

    def _accept(self, sequence: _Sequence, token: int) -> None:
        if sequence.handle.cancelled:
            sequence.finished = True
            return
        # The stop token is kept in the cache input but never shown.
        sequence.token_ids.append(token)
        if token in self._stop_ids and not sequence.params.ignore_eos:
            self._finish(sequence, "stop", len(sequence.token_ids) - 1)
            return
        at_limit = len(sequence.token_ids) >= sequence.max_tokens
        delta = sequence.answer.update(sequence.token_ids)
        if delta:
            self._emit(sequence.handle, "delta", delta)
        if sequence.answer.stopped:
            self._finish(sequence, "stop", len(sequence.token_ids))
        elif at_limit:
            self._finish(sequence, "length", len(sequence.token_ids))

    def _finish(self, sequence: _Sequence, reason: str, num_answer_tokens: int) -> None:
        delta = sequence.answer.finish(sequence.token_ids[:num_answer_tokens])
        if delta:
            self._emit(sequence.handle, "delta", delta)
        sequence.finished = True
        completion = Completion(
            text=sequence.answer.text,
            finish_reason=reason,
            prompt_tokens=len(sequence.prompt.input_ids),
            completion_tokens=len(sequence.token_ids),
        )
        self._emit(sequence.handle, "done", completion)

    def _emit(self, handle: Handle, kind: str, value: Any) -> None:
        self._outbox.append((handle, kind, value))

    def _flush(self) -> None:
        """Deliver this iteration's events: one wake-up per event loop, not per token."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Handle, str, Any]]] = {}
        for event in self._outbox:
            by_loop.setdefault(event[0]._loop, []).append(event)
        self._outbox = []
        for loop, events in by_loop.items():
            _deliver_threadsafe(loop, events)

    def _decode(self, token_ids: list[int]) -> str:
        return self.processor.tokenizer.decode(token_ids, skip_special_tokens=True)

    def _drop_finished(self) -> None:
        for sequence in self._rows:
            if sequence.handle.cancelled:
                sequence.finished = True
        keep = [row for row, s in enumerate(self._rows) if not s.finished]
        if len(keep) == len(self._rows):
            return
        self._rows = [self._rows[row] for row in keep]
        if not keep:
            self._batch = None
        else:
            assert self._batch is not None
            self._batch.keep(keep)

    def _fail(self, sequences: list[_Sequence], exc: Exception) -> None:
        error = InternalError(
            f"generation failed ({type(exc).__name__}: {exc}); see the server log"
        )
        for sequence in {id(s): s for s in sequences}.values():
            if not sequence.finished:
                sequence.finished = True
                self._emit(sequence.handle, "error", error)
        self._rows, self._batch = [], None


def length_groups(lengths: list[int]) -> list[list[int]]:
    """Indices of `lengths` split into prefill passes, shortest prompts first, that cost
    least: a pass costs PREFILL_PASS_TOKENS plus its rows times its longest prompt.

    Over the prompts sorted by length, the cheapest split of the first `end` prompts is
    the cheapest split of some shorter start plus one pass over the rest (dynamic
    programming; a batch holds few enough prompts for the quadratic search)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    sorted_lengths = [lengths[index] for index in order]
    best_cost = [0] * (len(order) + 1)
    last_start = [0] * (len(order) + 1)  # where the last pass of the best split begins
    for end in range(1, len(order) + 1):
        best_cost[end], last_start[end] = min(
            (
                best_cost[start] + PREFILL_PASS_TOKENS + (end - start) * sorted_lengths[end - 1],
                start,
            )
            for start in range(end)
        )
    groups: list[list[int]] = []
    end = len(order)
    while end > 0:
        groups.insert(0, order[last_start[end] : end])
        end = last_start[end]
    return groups
