"""Presence: a worker's heartbeat (with the roots it serves), its holdings, its recovery thread.

A worker's main process (:meth:`Presence.start`, from ``worker_ready``) keeps its ready key,
``Keys.worker_ready(hostname)``, alive as its heartbeat: every ``worker_heartbeat_interval_s``
it is set again with a TTL of ``worker_heartbeat_ttl_s``, so it exists while the worker runs
and lapses within the TTL of its death. Its value is JSON: hostname, pid, incarnation (one
start of the process), the resolved ``allowed_roots`` it serves, and the time.
``Keys.worker_index()`` maps each incarnation to its hostname, so recoverers and readers
(:func:`live_workers`) find workers without scanning the key space.

Two daemon threads per worker:

- ``victor-presence`` writes the heartbeat, and the holdings tracker's changes as soon as a
  task is received (one pipeline per round, however many tasks arrived);
- ``victor-recovery`` runs ``recover`` (the reconciler's ``recover_dead_workers``) every
  interval: one worker at a time (a Redis lock) restores the tasks dead workers held.

:meth:`Presence.stop` runs at a clean shutdown, once the pool has finished or restored its
tasks: it deletes the heartbeat (if still its own), the holdings and the index entry.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from workers.core.errors import BackendUnavailableError
from workers.core.keys import Keys
from workers.core.redis_client import redis_client, translated
from workers.core.settings import Settings
from workers.maintenance.holdings import HoldingsTracker

logger = logging.getLogger(__name__)

_INDEX_TTL_S = 7 * 86_400  # an index left by a fleet that is gone, not a live one's

# KEYS: heartbeat, holdings, index ; ARGV: incarnation
_FORGET_SCRIPT = """
local beat = redis.call('GET', KEYS[1])
if beat and string.find(beat, '"' .. ARGV[1] .. '"', 1, true) then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class WorkerPresence:
    """A live worker as its heartbeat describes it."""

    hostname: str
    pid: int
    incarnation: str
    roots: tuple[str, ...]
    at: float


class Presence:
    """One worker's heartbeat, holdings and recovery thread (main process)."""

    def __init__(
        self,
        settings: Settings,
        hostname: str,
        recover: Callable[[], object] | None = None,
        client: redis.Redis | None = None,
    ) -> None:
        self.settings = settings
        self.hostname = hostname
        self.keys = Keys(settings.key_prefix)
        self.incarnation = uuid.uuid4().hex[:16]
        self.tracker = HoldingsTracker()
        self._recover = recover
        self._client = client
        self._pid = os.getpid()
        self._started_at = time.time()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis_client(self.settings.state_url)
        return self._client

    @property
    def holdings_key(self) -> str:
        return self.keys.worker_holdings(self.hostname, self.incarnation)

    def value(self) -> str:
        """The heartbeat's value: who this worker is and the roots it serves."""
        roots = [str(Path(root).resolve()) for root in self.settings.allowed_roots]
        return json.dumps(
            {
                "hostname": self.hostname,
                "pid": self._pid,
                "incarnation": self.incarnation,
                "roots": roots,
                "started_at": self._started_at,
                "at": time.time(),
            }
        )

    # --- life -----------------------------------------------------------------------------
    def start(self) -> None:
        """Beat once now (the worker is ready when this returns), then keep beating."""
        try:
            self.write(beat=True)
        except Exception:  # never block a worker on it: the presence thread retries
            logger.warning("could not record the presence of %s", self.hostname, exc_info=True)
        self._threads = [
            threading.Thread(target=self._beat_loop, name="victor-presence", daemon=True),
        ]
        if self._recover is not None:
            self._threads.append(
                threading.Thread(target=self._recover_loop, name="victor-recovery", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    def received(self, request: Any) -> None:
        """``task_received`` (hot path): note the task; the presence thread writes it at once."""
        if self.tracker.received(request):
            self._wake.set()

    def stop(self) -> None:
        """Clean shutdown: stop the threads, forget this worker's heartbeat and holdings."""
        if os.getpid() != self._pid:
            return
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=3)
        with translated("clearing a worker's presence"):
            self.client.eval(
                _FORGET_SCRIPT,
                3,
                self.keys.worker_ready(self.hostname),
                self.holdings_key,
                self.keys.worker_index(),
                self.incarnation,
            )

    # --- one round ------------------------------------------------------------------------
    def write(self, beat: bool) -> None:
        """Write the holdings' changes, and the heartbeat when ``beat``, in one pipeline."""
        added, removed = self.tracker.changes()
        if not (beat or added or removed):
            return
        keys = self.keys
        holdings = self.holdings_key
        pipe = self.client.pipeline(transaction=False)
        if added:
            pipe.hset(holdings, mapping=added)  # type: ignore[arg-type]
        if removed:
            pipe.hdel(holdings, *removed)
        if beat:
            ttl_ms = max(1, int(self.settings.worker_heartbeat_ttl_s * 1000))
            pipe.set(keys.worker_ready(self.hostname), self.value(), px=ttl_ms)
            pipe.hset(keys.worker_index(), self.incarnation, self.hostname)
            pipe.expire(keys.worker_index(), _INDEX_TTL_S)
        if beat or added:
            # Past the visibility timeout kombu restores the messages itself.
            pipe.expire(holdings, self.settings.visibility_timeout_s)
        with translated("recording a worker's presence"):
            pipe.execute()
        self.tracker.written(added, removed)

    def _beat_loop(self) -> None:
        interval = self.settings.worker_heartbeat_interval_s
        next_beat = time.monotonic() + interval
        failing = False
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_beat - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                return
            beat = time.monotonic() >= next_beat
            try:
                self.write(beat)
            except Exception:  # never take the worker down; retry soon
                if not failing:
                    logger.warning("presence of %s not recorded", self.hostname, exc_info=True)
                failing = True
                self._stop.wait(interval / 4)  # well within the recoverers' second look
                continue
            failing = False
            if beat:
                next_beat = time.monotonic() + interval

    def _recover_loop(self) -> None:
        assert self._recover is not None
        while not self._stop.wait(self.settings.worker_heartbeat_interval_s):
            try:
                self._recover()
            except BackendUnavailableError:
                logger.debug("recovery pass skipped: Redis unavailable", exc_info=True)
            except Exception:
                logger.warning("recovery pass failed", exc_info=True)


def live_workers(client: redis.Redis, keys: Keys) -> list[WorkerPresence]:
    """Every worker whose heartbeat is alive, with the roots it serves."""
    with translated("listing live workers"):
        index = client.hgetall(keys.worker_index())
        hostnames = sorted({_text(hostname) for hostname in index.values()})
        beats = client.mget([keys.worker_ready(name) for name in hostnames]) if hostnames else []
    workers = []
    for beat in beats:
        try:
            fields = json.loads(beat) if beat is not None else None
        except ValueError:
            fields = None  # a ready flag from something other than a victor worker
        if not isinstance(fields, dict):
            continue
        workers.append(
            WorkerPresence(
                hostname=str(fields.get("hostname", "")),
                pid=int(fields.get("pid", 0)),
                incarnation=str(fields.get("incarnation", "")),
                roots=tuple(str(root) for root in fields.get("roots", [])),
                at=float(fields.get("at", 0.0)),
            )
        )
    return workers


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
