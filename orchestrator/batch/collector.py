"""Where a driver finds the outcomes of its chunks: the ledger, by task id.

On a fleet one HMGET asks for every chunk in flight (a round trip per poll, whatever the run's
size); in embedded mode the in-process ledger is read and its condition wakes the driver.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from celery import Celery

from workers.core.keys import Keys
from workers.core.redis_client import redis_client, translated
from workers.core.settings import Mode
from workers.ledger import MemoryLedger
from workers.runtime import runtime_of

IDLE_PAUSE_S = 0.004


class OutcomeCollector(Protocol):
    """Recorded outcomes of a run's tasks."""

    def fetch(self, task_ids: list[str]) -> dict[str, Any]:
        """The outcomes recorded so far for ``task_ids`` (missing ids are still running)."""
        ...

    def pause(self) -> None:
        """Wait a little for more outcomes."""
        ...


class LedgerCollector:
    """Reads the process's ledger (embedded mode's in-memory one)."""

    def __init__(self, app: Celery, run_id: str) -> None:
        self._ledger = runtime_of(app).ledger
        self._run_id = run_id

    def fetch(self, task_ids: list[str]) -> dict[str, Any]:
        found = {}
        for task_id in task_ids:
            outcome = self._ledger.get_result(self._run_id, task_id)
            if outcome is not None:
                found[task_id] = outcome
        return found

    def pause(self) -> None:
        if isinstance(self._ledger, MemoryLedger):
            self._ledger.wait(0.05)
        else:
            time.sleep(IDLE_PAUSE_S)


class RedisCollector:
    """One HMGET on the run's results hash for every chunk in flight."""

    def __init__(self, url: str, keys: Keys, run_id: str) -> None:
        self._redis = redis_client(url)
        self._key = keys.job_results(run_id)

    def fetch(self, task_ids: list[str]) -> dict[str, Any]:
        if not task_ids:
            return {}
        with translated("reading batch outcomes"):
            values = self._redis.hmget(self._key, task_ids)
        return {
            task_id: json.loads(value)
            for task_id, value in zip(task_ids, values, strict=True)
            if value is not None
        }

    def pause(self) -> None:
        time.sleep(IDLE_PAUSE_S)


def collector_for(app: Celery, run_id: str) -> OutcomeCollector:
    settings = runtime_of(app).settings
    if settings.mode is Mode.DISTRIBUTED:
        return RedisCollector(settings.state_url, Keys(settings.key_prefix), run_id)
    return LedgerCollector(app, run_id)
