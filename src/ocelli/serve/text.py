"""Turning a growing list of generated tokens into text deltas that are safe to send.

Streaming must never send text it would have to take back, so a delta holds back:
a trailing partial UTF-8 character (decoded as U+FFFD), text that may be the start of
a stop string, and trailing whitespace (answers are stripped, as `OcelliPipeline`
strips them). The streamed deltas therefore add up to exactly the final answer."""

from __future__ import annotations

from collections.abc import Sequence


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
            answer = answer[: len(answer) - self._held_back(answer)]
            answer = answer.rstrip("\ufffd")
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
