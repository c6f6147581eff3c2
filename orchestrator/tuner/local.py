"""The tuner inside one process: the embedded worker's resizable threads pool, tuned in place.

The same runner and policy as ``victor tuner`` on a fleet, with three local parts: the figures
come from this process's metrics (the embedded worker reports to its memory store), the pool is
resized by calling it (no remote control), and the records and decisions stay in memory (no
Redis, no lease: nobody else tunes this worker).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from orchestrator.tuner.actuation import Actuation
from orchestrator.tuner.journal import DECISIONS_MAXLEN, TunerJournal
from orchestrator.tuner.runner import TunerRunner
from workers.celery_app.internals import pool_grow, pool_shrink
from workers.core.keys import Keys
from workers.core.settings import Settings
from workers.telemetry.fleet import get_metrics


class PoolActuator:
    """Resizes a worker's pool in this process, through Celery's own ``pool_grow`` and
    ``pool_shrink`` control handlers (they also move the consumer's prefetch with the size)."""

    def __init__(self, consumer: Any) -> None:
        self.state = SimpleNamespace(consumer=consumer)

    def resize(self, worker: str, mode: str, current: int, target: int, floor: int) -> Actuation:
        pool = self.state.consumer.pool
        size = int(pool.num_processes)  # the pool's own size, whatever was last reported
        try:
            if target > size:
                answer = pool_grow(self.state, n=target - size)
            elif target < size:
                answer = pool_shrink(self.state, n=size - target)
            else:
                answer = {"ok": "unchanged"}
        except (ValueError, RuntimeError) as exc:
            return Actuation(size=int(pool.num_processes), ok=False, detail=str(exc))
        error = answer.get("error")
        return Actuation(size=int(pool.num_processes), ok=error is None, detail=error or "")


class MemoryTunerJournal(TunerJournal):
    """The journal's records, decisions and fleet summary, kept in this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.client = None
        self.ttl_s = settings.tuner_decisions_ttl_s
        self._records: dict[str, dict[str, Any]] = {}
        self._decisions: deque[dict[str, Any]] = deque(maxlen=DECISIONS_MAXLEN)
        self._fleet: dict[str, str] = {}

    def load(self, worker: str) -> dict[str, Any] | None:
        return self._records.get(worker)

    def load_many(self, workers: list[str]) -> dict[str, dict[str, Any]]:
        return {name: self._records[name] for name in workers if name in self._records}

    def save(self, worker: str, record: dict[str, Any]) -> None:
        self._records[worker] = record

    def append(self, decisions: list[dict[str, Any]], now: float | None = None) -> None:
        self._decisions.extend(decisions)

    def decisions(self, count: int = 500) -> list[dict[str, Any]]:
        return list(reversed(self._decisions))[:count]

    def publish(self, summary: dict[str, Any], actions: Counter[str], ttl_s: int) -> None:
        self._fleet.update({name: str(value) for name, value in summary.items()})
        for action, count in actions.items():
            key = f"decisions:{action}"
            self._fleet[key] = str(int(self._fleet.get(key, "0")) + count)

    def fleet(self) -> dict[str, str]:
        return dict(self._fleet)


@contextmanager
def tuned_in_process(settings: Settings, worker: Any) -> Iterator[TunerRunner | None]:
    """Tune ``worker``'s pool from a thread while the block runs (None: it cannot resize)."""
    consumer = getattr(worker, "consumer", None)
    pool = getattr(consumer, "pool", None)
    if not settings.tuner_enabled or not callable(getattr(pool, "grow", None)):
        yield None
        return
    runner = TunerRunner(
        settings,
        figures=lambda: get_metrics(settings),
        journal=MemoryTunerJournal(settings),
        actuator=PoolActuator(consumer),
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=runner.run, args=(stop,), name="victor-embedded-tuner", daemon=True
    )
    thread.start()
    try:
        yield runner
    finally:
        stop.set()
        thread.join(5)
