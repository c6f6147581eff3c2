"""The batch driver: input records -> chunks -> a bounded window of Celery tasks -> output.

Chunk ``k`` holds input records ``k * chunk_size`` up to the next chunk; its task id is
``{run_id}.{k}``, so the ledger records its outcome once whichever copy runs it. At most
``window`` chunks are in flight; the reader is a generator the loop pulls from only when a slot
is free, so the driver holds ``window * chunk_size`` items whatever the input's size. Finished
chunks are appended to the files and then committed to the run record; committed chunks are
neither read nor run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from pydantic import ValidationError

from orchestrator.batch.collector import OutcomeCollector
from orchestrator.batch.inputs import InputRecord
from orchestrator.batch.output import OutputFiles, dumps
from orchestrator.batch.record import CANCELLED, ChunkSet, Progress, RunCancelledError, RunStore
from workers.core.names import BATCH_TASK, TENANT_HEADER
from workers.skills.spec import SkillSpec

ProgressCallback = Callable[[int, int], None]
CANCEL_CHECK_S = 2.0


@dataclass
class BatchOptions:
    """What every chunk of a run shares."""

    run_id: str
    spec: SkillSpec
    params: dict[str, Any]
    chunk_size: int
    window: int
    tenant: str
    id_field: str | None = None
    stale_after_s: float = 900.0
    resuming: bool = False


@dataclass
class Chunk:
    """One chunk: its records, the items it sends and when it was (last) published."""

    number: int
    task_id: str
    records: list[InputRecord] = field(default_factory=list)
    sent: list[InputRecord] = field(default_factory=list)
    published_at: float = 0.0


@dataclass
class DriverStats:
    """Counters of one driver's session (a resumed run starts them from its record)."""

    done_items: int = 0
    failed_items: int = 0
    chunks_done: int = 0
    skipped_chunks: int = 0
    recovered_chunks: int = 0  # finished by the fleet while no driver watched
    republished: int = 0
    items_sent: int = 0
    first_chunk_s: float | None = None  # from start to the first chunk to run (resume skip)


def chunks_of(
    records: Iterator[InputRecord], chunk_size: int, committed: ChunkSet, run_id: str
) -> Iterator[Chunk]:
    """Group records into chunks; committed chunks are counted, never yielded."""
    current: Chunk | None = None
    for record in records:
        number = record.index // chunk_size
        if current is not None and current.number != number:
            yield current
            current = None
        if number in committed:
            continue
        if current is None:
            current = Chunk(number, f"{run_id}.{number}")
        current.records.append(record)
    if current is not None:
        yield current


class BatchDriver:
    """Runs one batch run to its end (or to a cancel) with a bound on work in flight."""

    def __init__(
        self,
        app: Celery,
        store: RunStore,
        files: OutputFiles,
        collector: OutcomeCollector,
        options: BatchOptions,
        stats: DriverStats,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.files = files
        self.collector = collector
        self.options = options
        self.stats = stats
        self.on_progress = on_progress
        self._in_flight: dict[str, Chunk] = {}
        self._last_cancel_check = time.monotonic()

    def run(self, chunks: Iterator[Chunk]) -> DriverStats:
        """Drive every chunk to the output; return the counters."""
        exhausted = False
        started = time.monotonic()
        with self.app.producer_or_acquire() as producer:
            while True:
                ready: list[tuple[Chunk, list[dict[str, Any]]]] = []
                while not exhausted and len(self._in_flight) < self.options.window:
                    chunk = next(chunks, None)
                    if chunk is None:
                        exhausted = True
                        break
                    if self.stats.first_chunk_s is None:
                        self.stats.first_chunk_s = time.monotonic() - started
                    if not self._prepare(chunk):
                        ready.append((chunk, []))  # nothing to run: only bad records
                    elif self.options.resuming and (found := self._recorded(chunk)) is not None:
                        ready.append((chunk, found))
                        self.stats.recovered_chunks += 1
                    else:
                        self._publish(chunk, producer)
                outcomes = self.collector.fetch(list(self._in_flight))
                for task_id, outcome in outcomes.items():
                    ready.append((self._in_flight.pop(task_id), outcome))
                if ready:
                    self._commit(ready)
                elif exhausted and not self._in_flight:
                    return self.stats
                else:
                    self._republish_stale(producer)
                    self._check_cancelled()
                    self.collector.pause()

    def _prepare(self, chunk: Chunk) -> bool:
        """Check each item against the skill's input model; True when some item is sent."""
        options = self.options
        for position, record in enumerate(chunk.records):
            if record.item is None:
                continue
            item = {**options.params, **record.item}
            try:
                options.spec.input_model.model_validate(item)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"]) or "item"
                reason = f"does not fit skill {options.spec.name!r}: {where}: {first['msg']}"
                chunk.records[position] = InputRecord(
                    record.index, record.line, item=record.item, error=reason
                )
                continue
            chunk.records[position] = InputRecord(record.index, record.line, item=item)
            chunk.sent.append(chunk.records[position])
        return bool(chunk.sent)

    def _recorded(self, chunk: Chunk) -> list[dict[str, Any]] | None:
        found = self.collector.fetch([chunk.task_id])
        return found.get(chunk.task_id)

    def _publish(self, chunk: Chunk, producer: Any) -> None:
        options = self.options
        self.app.signature(
            BATCH_TASK,
            args=(options.spec.name, [record.item for record in chunk.sent]),
            kwargs={"job_id": options.run_id},
            task_id=chunk.task_id,
            headers={TENANT_HEADER: options.tenant},
        ).apply_async(producer=producer, ignore_result=True)
        if not chunk.published_at:
            self.stats.items_sent += len(chunk.sent)
        chunk.published_at = time.monotonic()
        self._in_flight[chunk.task_id] = chunk

    def _republish_stale(self, producer: Any) -> None:
        """A chunk unanswered past stale-after goes out again (the ledger keeps one outcome)."""
        now = time.monotonic()
        for chunk in list(self._in_flight.values()):
            if now - chunk.published_at > self.options.stale_after_s:
                self._publish(chunk, producer)
                self.stats.republished += 1

    def _check_cancelled(self) -> None:
        if time.monotonic() - self._last_cancel_check < CANCEL_CHECK_S:
            return
        self._last_cancel_check = time.monotonic()
        if self.store.get(self.options.run_id).status == CANCELLED:
            raise RunCancelledError(f"batch run {self.options.run_id} was cancelled")

    def _commit(self, ready: list[tuple[Chunk, list[dict[str, Any]]]]) -> None:
        out_lines: list[bytes] = []
        error_lines: list[bytes] = []
        timing_lines: list[bytes] = []
        stats = self.stats
        now = time.monotonic()
        wall = round(time.time(), 3)
        for chunk, outcomes in ready:
            timing_lines.append(self._timing(chunk, now, wall))
            by_index = dict(zip((r.index for r in chunk.sent), outcomes, strict=False))
            for record in chunk.records:
                line, error = self._lines(record, by_index.get(record.index))
                out_lines.append(line)
                stats.done_items += 1
                if error is not None:
                    error_lines.append(error)
                    stats.failed_items += 1
            stats.chunks_done += 1
        self.files.append(out_lines, error_lines, timing_lines)
        out_bytes, err_bytes = self.files.flush()
        progress = Progress(
            out_bytes, err_bytes, stats.done_items, stats.failed_items, stats.chunks_done
        )
        status = self.store.commit(
            self.options.run_id, [chunk.number for chunk, _ in ready], progress
        )
        if self.on_progress is not None:
            self.on_progress(stats.done_items, stats.failed_items)
        if status == CANCELLED:
            raise RunCancelledError(f"batch run {self.options.run_id} was cancelled")

    @staticmethod
    def _timing(chunk: Chunk, now: float, wall: float) -> bytes:
        """The timings line of a chunk: ``ms`` from its (last) publish to its commit, or None
        for a chunk nothing was published for (bad records only, or found already done)."""
        elapsed_ms = round((now - chunk.published_at) * 1000, 2) if chunk.published_at else None
        failed = sum(1 for record in chunk.records if record.error is not None)
        return dumps(
            {"chunk": chunk.number, "items": len(chunk.records), "ms": elapsed_ms, "at": wall}
            | ({"bad": failed} if failed else {})
        )

    def _lines(
        self, record: InputRecord, outcome: dict[str, Any] | None
    ) -> tuple[bytes, bytes | None]:
        """The output line of one record, and its errors-file line when it failed."""
        line: dict[str, Any] = {"index": record.index}
        id_field = self.options.id_field
        if id_field is not None:
            line["id"] = (record.item or {}).get(id_field)
        if record.error is None and outcome is None:
            outcome = {"ok": False, "error": "no outcome recorded for this item", "type": "Lost"}
        if record.error is None and outcome is not None and outcome.get("ok"):
            line.update(ok=True, result=outcome.get("value"))
            return dumps(line), None
        if record.error is not None:
            reason = record.error
            kind = "InputError" if record.item is None else "SkillInputError"
        else:
            assert outcome is not None
            reason, kind = str(outcome.get("error")), str(outcome.get("type") or "Error")
        line.update(ok=False, error=reason, type=kind)
        error: dict[str, Any] = {
            "index": record.index,
            "line": record.line or None,
            "skill": self.options.spec.name,
            "error": reason,
            "type": kind,
        }
        if record.item is not None:
            error["item"] = record.item
        elif record.raw is not None:
            error["raw"] = record.raw
        return dumps(line), dumps(error)
