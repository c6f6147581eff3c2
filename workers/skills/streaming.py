"""Text a running skill streams to whoever follows its job, coalesced into few deltas.

The task body that runs a job's items installs a sink (``streaming_to``) and the executor marks
the item being run (``streaming_item``); a skill that produces text piece by piece (``chat``)
asks for ``text_stream()`` and pushes pieces to it. Outside a job there is no sink, and the skill
computes its whole answer the plain way. Pieces are coalesced: a delta goes out once
``MIN_CHARS`` characters gathered or ``MIN_INTERVAL_S`` passed since the last one, so a long
answer is tens of deltas, not thousands. Each delta carries its character offset in the answer:
a follower places it exactly, and a re-run of the item (a redelivery) starts again at 0.

Deltas are best effort: when the sink cannot publish (Redis away), the stream stops publishing
and the skill still returns its whole answer as its result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from workers.core.errors import BackendUnavailableError

logger = logging.getLogger(__name__)

# (item index in its task, character offset in the answer, text)
DeltaSink = Callable[[int, int, str], None]

MIN_CHARS = 64
MIN_INTERVAL_S = 0.05

_sink: ContextVar[DeltaSink | None] = ContextVar("victor_delta_sink", default=None)
_item: ContextVar[int] = ContextVar("victor_delta_item", default=0)


@contextmanager
def streaming_to(sink: DeltaSink) -> Iterator[None]:
    """Send the text deltas of skills run inside this block to ``sink``."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


@contextmanager
def streaming_item(index: int) -> Iterator[None]:
    """Mark the item being run (its index in the task's items)."""
    token = _item.set(index)
    try:
        yield
    finally:
        _item.reset(token)


class TextStream:
    """One answer's pieces, published as coalesced deltas to a sink."""

    def __init__(
        self,
        sink: DeltaSink,
        item: int = 0,
        min_chars: int = MIN_CHARS,
        min_interval_s: float = MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink: DeltaSink | None = sink
        self.item = item
        self.min_chars = min_chars
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.offset = 0  # characters published so far
        self.published = 0  # deltas published so far
        self._pending: list[str] = []
        self._pending_chars = 0
        self._last = clock()

    def push(self, text: str) -> None:
        """Add a piece; publish what gathered when it is long or old enough."""
        if not text or self.sink is None:
            return
        self._pending.append(text)
        self._pending_chars += len(text)
        now = self.clock()
        if self._pending_chars >= self.min_chars or now - self._last >= self.min_interval_s:
            self._flush(now)

    def close(self) -> None:
        """Publish what is left (call once the answer is complete)."""
        if self._pending:
            self._flush(self.clock())

    def _flush(self, now: float) -> None:
        text = "".join(self._pending)
        self._pending, self._pending_chars, self._last = [], 0, now
        if self.sink is None:
            return
        try:
            self.sink(self.item, self.offset, text)
        except BackendUnavailableError as exc:
            logger.warning("text deltas stop for this answer: %s", exc)
            self.sink = None
            return
        self.offset += len(text)
        self.published += 1


def text_stream() -> TextStream | None:
    """A stream to the current job's followers, or None when the skill runs outside a job."""
    sink = _sink.get()
    return None if sink is None else TextStream(sink, _item.get())
