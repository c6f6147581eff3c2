"""A batch run started from Python: await it for the summary, or iterate it for the results.

``start_batch`` takes a file, a directory or inline items (written to ``OUT.input.jsonl`` first,
so the run has a durable input and resumes like any other: the same call again picks it up).
The run drives in a worker thread with the session's app; iterating tails the output file, so
each item's line arrives once, in the order the chunks finish.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping
from pathlib import Path
from typing import Any

from celery import Celery

from orchestrator.batch.chunking import explicit_chunk_size
from orchestrator.batch.inputs import BatchInputError, input_source
from orchestrator.batch.runs import BatchRequest, check_request, drive_run, open_run, open_store
from workers.core.settings import Settings
from workers.runtime import runtime_of

TAIL_PAUSE_S = 0.05
Items = str | os.PathLike[str] | Iterable[Mapping[str, Any]]


def inline_input_path(out: str) -> str:
    """``results.jsonl`` -> ``results.input.jsonl``: where inline items are written."""
    path = Path(out)
    return str(path.with_name(f"{path.stem}.input.jsonl"))


def write_items(items: Iterable[Mapping[str, Any]], path: str) -> int:
    """Write inline items as JSONL (streamed: an iterator is never held whole); the count."""
    count = 0
    with open(path, "w", encoding="utf-8") as stream:
        for item in items:
            if not isinstance(item, Mapping):
                raise BatchInputError(
                    f"batch item {count} is a {type(item).__name__}; pass dicts (one per item)"
                )
            stream.write(json.dumps(dict(item), separators=(",", ":"), default=str) + "\n")
            count += 1
    return count


class BatchHandle:
    """A run in progress: ``await handle`` -> summary; ``async for line in handle`` -> lines."""

    def __init__(self, start: Callable[[], Celery], settings: Settings, request: BatchRequest):
        self._start = start
        self._settings = settings
        self.request = request
        self.run_id: str | None = None
        self._task: asyncio.Task[dict[str, Any]] | None = None

    def _running(self) -> asyncio.Task[dict[str, Any]]:
        if self._task is None:
            self._task = asyncio.ensure_future(asyncio.to_thread(self._drive))
        return self._task

    def _drive(self) -> dict[str, Any]:
        app = self._start()
        check_request(self.request, runtime_of(app).registry)
        store = open_store(self._settings)
        try:
            record, resuming = open_run(self.request, self._settings, store, resume=None, new=False)
            self.run_id = record.run_id
            return drive_run(app, store, record, self.request, resuming=resuming)
        finally:
            store.close()

    def __await__(self) -> Generator[Any, None, dict[str, Any]]:
        return self._running().__await__()

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        task = self._running()
        offset, pending = 0, b""
        while True:
            finished = task.done()
            chunk = await asyncio.to_thread(_read_from, self.request.out, offset)
            offset += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line:
                    yield json.loads(line)
            if finished and not chunk:
                await task  # raise the run's error, if it failed
                return
            if not chunk:
                await asyncio.sleep(TAIL_PAUSE_S)


def _read_from(path: str, offset: int) -> bytes:
    try:
        with open(path, "rb") as stream:
            stream.seek(offset)
            return stream.read()
    except FileNotFoundError:
        return b""


def start_batch(
    start: Callable[[], Celery],
    settings: Settings,
    items: Items,
    skill: str,
    *,
    out: str,
    params: Mapping[str, Any] | None = None,
    id_field: str | None = None,
    chunk_size: int | None = None,
    window: int | None = None,
) -> BatchHandle:
    """A handle on the run of ``skill`` over ``items``; it starts when first awaited or iterated.

    ``start`` returns the app the run dispatches with (the facade's started session's).
    """
    if isinstance(items, str | os.PathLike):
        location = os.fspath(items)
    else:
        location = inline_input_path(out)
        write_items(items, location)
    from workers.skills.registry import load_registry

    source = input_source(location, "auto", file_param=load_registry().get(skill).file_param)
    request = BatchRequest(
        source=source,
        skill=skill,
        out=out,
        params=dict(params or {}),
        id_field=id_field,
        chunk_size=chunk_size or explicit_chunk_size(settings),
        window=window or max(4, 2 * settings.effective_concurrency),
        stale_after_s=float(settings.reconciler_stale_after_s),
    )
    return BatchHandle(start, settings, request)
