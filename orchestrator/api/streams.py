"""Server-Sent Events for one job: each task result as it is recorded, progress, a final event.

Events come from the ledger's Redis streams (XREAD BLOCK), so the first result reaches the
client as soon as a worker records it. Event ids are ``seq:stream-id``; a client that
reconnects with ``Last-Event-ID`` (or ``?after=seq``) resumes after that event.

Skills that stream text (``chat``) add ``item.delta`` events while their task runs: ``{task_id,
item, offset, text}``, coalesced by the worker (``workers.skills.streaming``), from a second
stream beside the results. Once a job has deltas, event ids are ``seq:stream-id:delta-id`` so a
reconnect resumes both; without a delta id, deltas resume from the results' stream id (both
streams' ids are the Redis server's clock).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from starlette.concurrency import run_in_threadpool

from orchestrator.api import jobs
from orchestrator.api.keystore import Principal
from orchestrator.api.services import Services
from workers.core.errors import VictorError
from workers.core.redis_client import REDIS_ERRORS
from workers.ledger import TERMINAL

BLOCK_MS = 1000
KEEPALIVE_S = 15.0
BATCH = 500


def format_event(event: str, data: Any, event_id: str | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'))}")
    return ("\n".join(lines) + "\n\n").encode()


def parse_cursor(last_event_id: str | None, after: int | None) -> tuple[int, str | None]:
    """``(seq, stream id or None)`` to resume after; a bad id starts from the beginning.

    The stream id may carry the delta stream's id after a second colon (``results:deltas``).
    """
    if last_event_id:
        seq_text, _, stream_id = last_event_id.partition(":")
        if seq_text.isdigit():
            return int(seq_text), (stream_id or None)
    return max(after or 0, 0), None


def _stream_order(entry_id: str, kind: int) -> tuple[int, int, int]:
    """Sort key of a stream entry: its time, deltas before results in the same millisecond
    (a task's deltas are published before its result), then its sequence."""
    millis, _, sequence = entry_id.partition("-")
    return int(millis), kind, int(sequence or 0)


class JobEvents:
    """One client's stream of one job's events."""

    def __init__(self, services: Services, principal: Principal, job_id: str) -> None:
        self.services = services
        self.principal = principal
        self.job_id = job_id
        self.key = services.keys.job_events(job_id)
        self.deltas_key = services.keys.job_deltas(job_id)

    async def stream(self, seq: int, stream_id: str | None) -> AsyncIterator[bytes]:
        client = aioredis.Redis.from_url(
            self.services.redis_url,
            socket_timeout=BLOCK_MS / 1000 + 5,
            socket_connect_timeout=2,
        )
        try:
            async for chunk in self._events(client, seq, stream_id):
                yield chunk
        except REDIS_ERRORS as exc:
            yield format_event(
                "error",
                {"message": f"Redis is unreachable: {exc}; reconnect with Last-Event-ID to resume"},
            )
        except VictorError as exc:  # the job expired, or the ledger became unreachable
            yield format_event("error", {"message": str(exc)})
        finally:
            await client.aclose()

    async def _events(
        self, client: aioredis.Redis, seq: int, stream_id: str | None
    ) -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        delta_cursor: str | None = None
        if stream_id is None:
            seq, cursor = await self._cursor_after(client, seq)
        else:
            cursor, _, delta_cursor = stream_id.partition(":")
        streamed = bool(delta_cursor)  # ids carry the delta cursor once a delta was sent
        delta_cursor = delta_cursor or cursor
        last_progress: tuple[int, str] | None = None
        last_sent = time.monotonic()

        def event_id() -> str:
            return f"{seq}:{cursor}:{delta_cursor}" if streamed else f"{seq}:{cursor}"

        while True:
            block = None if last_progress is None else BLOCK_MS
            streams: dict[Any, Any] = {self.key: cursor, self.deltas_key: delta_cursor}
            response: Any = await client.xread(streams, count=BATCH, block=block)
            results, deltas = _split(response, self.key)
            entries = sorted(
                [(entry_id, 1, fields) for entry_id, fields in results]
                + [(entry_id, 0, fields) for entry_id, fields in deltas],
                key=lambda entry: _stream_order(entry[0], entry[1]),
            )
            for entry_id, kind, fields in entries:
                if kind == 0:
                    delta_cursor, streamed = entry_id, True
                    yield format_event("item.delta", _delta(fields), event_id())
                else:
                    seq += 1
                    cursor = entry_id
                    yield format_event("result", _result(seq, fields), event_id())
                last_sent = time.monotonic()
            job = await run_in_threadpool(jobs.get_job, self.services, self.principal, self.job_id)
            progress = (job.done_tasks, job.status)
            if progress != last_progress:
                yield format_event(
                    "progress",
                    {"done": job.done_tasks, "total": job.total_tasks, "status": job.status},
                    event_id(),
                )
                last_progress = progress
                last_sent = time.monotonic()
            if job.status in TERMINAL and len(results) < BATCH and len(deltas) < BATCH:
                streams = {self.key: cursor, self.deltas_key: delta_cursor}
                tail: Any = await client.xread(streams, count=BATCH)
                if any(entries_of for _, entries_of in tail or []):
                    continue  # recorded after the status read: send them first
                yield format_event("end", jobs.job_view(job), event_id())
                return
            if time.monotonic() - last_sent > KEEPALIVE_S:
                yield b": keep-alive\n\n"
                last_sent = time.monotonic()

    async def _cursor_after(self, client: aioredis.Redis, seq: int) -> tuple[int, str]:
        """``(seq, stream id)`` of event number ``seq``, or of the last one when fewer exist."""
        if seq <= 0:
            return 0, "0-0"
        entries: Any = await client.xrange(self.key, count=seq)
        if not entries:
            return 0, "0-0"
        return len(entries), str(entries[-1][0].decode())


def _split(response: Any, results_key: str) -> tuple[list[Any], list[Any]]:
    """The entries of an XREAD reply, as ``(id, fields)``: the results', the deltas'."""
    results: list[Any] = []
    deltas: list[Any] = []
    for key, entries in response or []:
        name = key.decode() if isinstance(key, bytes) else str(key)
        found = [(entry_id.decode(), fields) for entry_id, fields in entries]
        (results if name == results_key else deltas).extend(found)
    return results, deltas


def _delta(fields: dict[bytes, bytes]) -> dict[str, Any]:
    return {
        "task_id": fields[b"task_id"].decode(),
        "item": int(fields[b"item"]),
        "offset": int(fields[b"offset"]),
        "text": fields[b"text"].decode(),
    }


def _result(seq: int, fields: dict[bytes, bytes]) -> dict[str, Any]:
    return {
        "seq": seq,
        "task_id": fields[b"task_id"].decode(),
        "worker": fields.get(b"worker", b"").decode(),
        "outcome": json.loads(fields[b"outcome"]),
    }
