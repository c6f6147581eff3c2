"""Server-Sent Events for one job: each task result as it is recorded, progress, a final event.

Events come from the ledger's Redis stream (XREAD BLOCK), so the first result reaches the
client as soon as a worker records it. Event ids are ``seq:stream-id``; a client that
reconnects with ``Last-Event-ID`` (or ``?after=seq``) resumes after that event.
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
    """``(seq, stream id or None)`` to resume after; a bad id starts from the beginning."""
    if last_event_id:
        seq_text, _, stream_id = last_event_id.partition(":")
        if seq_text.isdigit():
            return int(seq_text), (stream_id or None)
    return max(after or 0, 0), None


class JobEvents:
    """One client's stream of one job's events."""

    def __init__(self, services: Services, principal: Principal, job_id: str) -> None:
        self.services = services
        self.principal = principal
        self.job_id = job_id
        self.key = services.keys.job_events(job_id)

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
        if stream_id is None:
            seq, cursor = await self._cursor_after(client, seq)
        else:
            cursor = stream_id
        last_progress: tuple[int, str] | None = None
        last_sent = time.monotonic()
        while True:
            block = None if last_progress is None else BLOCK_MS
            response: Any = await client.xread({self.key: cursor}, count=BATCH, block=block)
            entries: list[Any] = response[0][1] if response else []
            for entry_id, fields in entries:
                seq += 1
                cursor = entry_id.decode()
                yield format_event("result", _result(seq, fields), f"{seq}:{cursor}")
                last_sent = time.monotonic()
            job = await run_in_threadpool(jobs.get_job, self.services, self.principal, self.job_id)
            progress = (job.done_tasks, job.status)
            if progress != last_progress:
                yield format_event(
                    "progress",
                    {"done": job.done_tasks, "total": job.total_tasks, "status": job.status},
                    f"{seq}:{cursor}",
                )
                last_progress = progress
                last_sent = time.monotonic()
            if job.status in TERMINAL and len(entries) < BATCH:
                tail: Any = await client.xread({self.key: cursor}, count=BATCH)
                if tail and tail[0][1]:
                    continue  # results recorded after the status read: send them first
                yield format_event("end", jobs.job_view(job), f"{seq}:{cursor}")
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


def _result(seq: int, fields: dict[bytes, bytes]) -> dict[str, Any]:
    return {
        "seq": seq,
        "task_id": fields[b"task_id"].decode(),
        "worker": fields.get(b"worker", b"").decode(),
        "outcome": json.loads(fields[b"outcome"]),
    }
