"""The fleet's pool size and the tuner's decisions while a run is driven (the report's pool chart).

A ``FleetSampler`` thread reads, every ``SAMPLE_EVERY_S`` and once at the start and the end,
the sum of ``pool_size`` over the live workers (the rows their main processes write each
metrics flush: Redis on a fleet, this process's memory store embedded) and the tuner's grow and
shrink decisions made since its last read. It appends them as JSON lines to the run's fleet
file (``output.fleet_path_for``); a resumed run appends to the same file:

    {"at": 1718000000.1, "pool": 8, "workers": 2}
    {"at": 1718000001.3, "decision": {"worker": ..., "current": 4, "target": 6, ...}}

A read that fails (Redis away for a moment) skips that sample; it never fails the run.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any

from orchestrator.batch.output import dumps
from workers.core.errors import VictorError
from workers.core.keys import Keys
from workers.core.settings import Mode, Settings
from workers.telemetry.process import PROCESS_TTL_S
from workers.telemetry.store import as_ints, store_for

logger = logging.getLogger(__name__)

SAMPLE_EVERY_S = 2.0
DECISIONS_READ = 200  # newest decisions read a sample: more than a fleet makes in 2 s
DECISION_KEYS = ("worker", "current", "target", "action", "rule", "reason", "applied")
RESIZES = frozenset({"grow", "shrink"})  # holds are every worker every interval: not kept

# () -> (the fleet's pool size, live workers)
PoolReader = Callable[[], tuple[int, int]]
# () -> the latest tuner decisions (any order), each with an ``at``
DecisionReader = Callable[[], list[dict[str, Any]]]


def pool_reader(settings: Settings) -> PoolReader:
    """The sum of ``pool_size`` over the live workers and their count: two reads of the
    metrics store (the workers' index, then their rows), not the whole ``get_metrics``."""
    store = store_for(settings)
    keys = Keys(settings.key_prefix)

    def read() -> tuple[int, int]:
        names = sorted(store.members(keys.metrics_workers(), time.time() - PROCESS_TTL_S))
        rows = [row for row in store.hashes([keys.metrics_worker(n) for n in names]) if row]
        return sum(as_ints(row).get("pool_size", 0) for row in rows), len(rows)

    return read


def fleet_decisions(settings: Settings) -> DecisionReader | None:
    """The tuner's decision stream on a fleet; None embedded (that tuner keeps its decisions in
    its session: pass ``session.tuner.journal.decisions`` to ``FleetSampler`` instead)."""
    if settings.mode is not Mode.DISTRIBUTED:
        return None
    from orchestrator.tuner.journal import TunerJournal

    journal = TunerJournal(settings)
    return lambda: journal.decisions(DECISIONS_READ)


class FleetSampler:
    """Appends pool-size samples and new tuner decisions to ``path`` from a daemon thread."""

    def __init__(
        self,
        path: str,
        read_pool: PoolReader,
        read_decisions: DecisionReader | None = None,
        *,
        every_s: float = SAMPLE_EVERY_S,
        skip_empty: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.read_pool = read_pool
        self.read_decisions = read_decisions
        self.every_s = every_s
        self.skip_empty = skip_empty  # embedded: no worker row yet means "not reported yet"
        self.clock = clock
        self.samples = 0
        self._seen_at = clock()  # decisions before this session are not the run's
        self._stream: IO[bytes] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Read and append one sample; a failed read or write skips it."""
        lines: list[bytes] = []
        now = self.clock()
        try:
            pool, workers = self.read_pool()
            if workers or not self.skip_empty:
                lines.append(dumps({"at": round(now, 3), "pool": pool, "workers": workers}))
            if self.read_decisions is not None:
                lines += self._new_decisions(self.read_decisions())
        # VictorError: the store is away for a moment; RuntimeError: the embedded journal's
        # deque grew while it was copied. Either way the next sample reads again.
        except (VictorError, RuntimeError) as exc:
            logger.debug("fleet sample skipped: %s", exc)
        if lines and self._stream is not None:
            try:
                self._stream.write(b"".join(lines))
                self._stream.flush()
                self.samples += 1
            except OSError as exc:
                logger.warning("cannot write pool samples to %s: %s", self.path, exc)

    def _new_decisions(self, entries: list[dict[str, Any]]) -> list[bytes]:
        fresh = [entry for entry in entries if float(entry.get("at") or 0.0) > self._seen_at]
        if not fresh:
            return []
        self._seen_at = max(float(entry["at"]) for entry in fresh)
        return [
            dumps({"at": entry["at"], "decision": {k: entry.get(k) for k in DECISION_KEYS}})
            for entry in sorted(fresh, key=lambda entry: float(entry["at"]))
            if entry.get("action") in RESIZES
        ]

    def start(self) -> FleetSampler:
        try:
            self._stream = open(self.path, "ab")
        except OSError as exc:  # the report loses its pool chart, the run goes on
            logger.warning("cannot write pool samples to %s: %s", self.path, exc)
            return self
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="victor-fleet-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def stop(self) -> None:
        """Stop the thread, take the last sample, close the file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.every_s + 5)
            self.sample()
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def __enter__(self) -> FleetSampler:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class FleetSamples:
    """A run's fleet file read back: pool sizes over time and the resize decisions."""

    pool: list[tuple[float, int]] = field(default_factory=list)  # (wall time, pool size)
    decisions: list[dict[str, Any]] = field(default_factory=list)  # each with its "at"

    @property
    def first_at(self) -> float | None:
        times = [at for at, _ in self.pool] + [float(d["at"]) for d in self.decisions]
        return min(times) if times else None


def read_fleet_samples(path: str) -> FleetSamples:
    """The samples of ``path`` in time order (a missing file or a torn line: none of it)."""
    samples = FleetSamples()
    if not os.path.exists(path):
        return samples
    with open(path, "rb") as stream:
        for raw in stream:
            try:
                line = json.loads(raw)
                at = float(line["at"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill
            if isinstance(line.get("decision"), dict):
                samples.decisions.append({**line["decision"], "at": at})
            elif isinstance(line.get("pool"), int):
                samples.pool.append((at, line["pool"]))
    samples.pool.sort()
    samples.decisions.sort(key=lambda decision: float(decision["at"]))
    return samples
