"""Turning a growing list of generated tokens into text deltas that are safe to send.

`IncrementalText` decodes only the newest tokens at each step: re-decoding the whole
answer costs time in its length at every token (6.5 us at 32 tokens, 80 us at 512).
`TextStream` then decides what of that text may be sent; `StreamedAnswer` joins the two
for one sequence. Streaming must never send text it would have to take back, so a delta
holds back: a trailing partial UTF-8 character (decoded as U+FFFD), text that may be the
start of a stop string, and trailing whitespace (answers are stripped, as
`OcelliPipeline` strips them). The streamed deltas therefore add up to exactly the final
answer, which is the whole answer decoded once."""

from __future__ import annotations

from collections.abc import Callable, Sequence

PARTIAL_CHARACTER = "\ufffd"  # what a decoder gives for bytes that end mid-character


class IncrementalText:
    """The decoded text of a growing list of token ids, decoding a few tokens per step.

    Each step decodes a window from `_prefix` (where the previous window's settled text
    began) to the end, and keeps what follows the prefix's own text. Starting the window
    a little before the new tokens, not at them, keeps tokenizers that decode a token
    differently at the start of a text (a SentencePiece word's leading space) agreeing
    with a full decode. Tokens whose text ends in a partial UTF-8 character wait for the
    ones that complete it, so the window always starts on a character boundary; `text`
    is then what decoding every token at once gives, less a trailing partial character.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self.text = ""
        self._prefix = 0  # first token of the window decoded each step
        self._settled = 0  # tokens whose text is in `text`
        self._prefix_text = ""  # the decoded text of tokens[_prefix:_settled]

    def update(self, token_ids: Sequence[int]) -> str:
        """Given every token so far (the last ones new), return the newly settled text."""
        window = self._decode(list(token_ids[self._prefix :]))
        if window.endswith(PARTIAL_CHARACTER) or not window.startswith(self._prefix_text):
            # An unfinished character, or a tokenizer whose clean-up rewrote the prefix's
            # text: wait for more tokens (or the final decode of the whole answer).
            return ""
        new_text = window[len(self._prefix_text) :]
        # The next window starts at the new tokens; what they decode to alone, as its
        # start, may differ from `new_text` (a leading space a tokenizer drops).
        self._prefix_text = self._decode(list(token_ids[self._settled :]))
        self._prefix, self._settled = self._settled, len(token_ids)
        self.text += new_text
        return new_text


class StreamedAnswer:
    """One sequence's answer as its tokens come: the deltas to send, then its text."""

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()) -> None:
        self._decode = decode
        self._decoded = IncrementalText(decode)
        self._stream = TextStream(stop)

    @property
    def text(self) -> str:
        """What has been sent: after `finish`, the answer."""
        return self._stream.text

    @property
    def stopped(self) -> bool:
        """Whether a stop string appeared: the answer ends before it."""
        return self._stream.stopped

    def update(self, token_ids: Sequence[int]) -> str:
        """The delta to send now that `token_ids` (every token so far) are generated."""
        self._decoded.update(token_ids)
        return self._stream.update(self._decoded.text)

    def finish(self, answer_ids: Sequence[int]) -> str:
        """The last delta: the whole answer decoded once settles what was held back."""
        return self._stream.update(self._decode(list(answer_ids)), final=True)


class TextStream:
    """Follows the decoded text of one sequence and says what may be sent so far."""

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self.stop = tuple(s for s in stop if s)
        self.text = ""  # what has been sent
        self.stopped = False  # a stop string appeared

    def update(self, decoded: str, final: bool = False) -> str:
        """Given all text decoded so far, return the new delta to send.

        Sets `stopped` when a stop string appears: the text before it is the answer."""
        if self.stopped:
            return ""
        answer = decoded.lstrip()
        cut = min((i for i in (answer.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            answer, final, self.stopped = answer[:cut], True, True
        if not final:
            # The partial character first: a stop string's start before it is held back too.
            answer = answer.rstrip(PARTIAL_CHARACTER)
            answer = answer[: len(answer) - self._held_back(answer)]
        answer = answer.rstrip()
        if not answer.startswith(self.text):
            # Decoding a longer prefix changed earlier text (tokenizer clean-up rules); what
            # was sent stays sent, and the rest follows from where the two agree.
            return ""
        delta = answer[len(self.text) :]
        self.text = answer
        return delta

    def _held_back(self, answer: str) -> int:
        """Length of the longest end of `answer` that begins some stop string."""
        longest = 0
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(answer)), longest, -1):
                if answer.endswith(stop[:size]):
                    longest = size
                    break
        return longest
