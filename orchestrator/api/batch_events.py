"""Server-Sent Events for one batch run: its progress as it changes, then a final ``end``.

The run's record is read every ``POLL_S``; a ``progress`` event goes out when its counters or
status change. Event ids are the run's items done: a client that reconnects with
``Last-Event-ID`` gets no progress it has seen (the next event has more items done, or the
end). The stream ends, with ``end`` and the run, once the run is no longer running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool

from orchestrator.api.batch_views import progress_view, run_view
from orchestrator.api.batches import BatchRunner
from orchestrator.api.keystore import Principal
from orchestrator.api.streams import KEEPALIVE_S, format_event
from workers.core.errors import VictorError

POLL_S = 0.25


def parse_last_event_id(last_event_id: str | None) -> int | None:
    """The items done the client saw last; None (from the start) for a missing or bad id."""
    if last_event_id and last_event_id.strip().isdigit():
        return int(last_event_id.strip())
    return None


class BatchEvents:
    """One client's stream of one run's progress."""

    def __init__(self, runner: BatchRunner, principal: Principal, run_id: str) -> None:
        self.runner = runner
        self.principal = principal
        self.run_id = run_id

    async def stream(self, seen: int | None) -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        last: tuple[int, int, str] | None = None
        last_sent = time.monotonic()
        try:
            while True:
                record = await run_in_threadpool(self.runner.get, self.principal, self.run_id)
                event_id = str(record.done_items)
                state = (record.done_items, record.failed_items, record.status)
                ended = record.status != "running"
                fresh = seen is None or record.done_items > seen
                if state != last and fresh:
                    yield format_event("progress", progress_view(record), event_id)
                    last, last_sent = state, time.monotonic()
                if ended:
                    yield format_event("end", run_view(record), event_id)
                    return
                if time.monotonic() - last_sent > KEEPALIVE_S:
                    yield b": keep-alive\n\n"
                    last_sent = time.monotonic()
                await asyncio.sleep(POLL_S)
        except VictorError as exc:  # the run expired, or Redis became unreachable
            yield format_event("error", {"message": f"{exc}; reconnect to resume"})
