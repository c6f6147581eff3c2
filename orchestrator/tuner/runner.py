"""The tuner's loop: read each live worker, decide its pool size, apply it, record why.

Every ``tuner_interval_s`` (at least one metrics flush): take or renew the lease (only its
holder acts), read ``get_metrics()``, and for each worker that can be resized build a sample
from the difference of its running totals since the last read, call ``next_concurrency``,
resize through the actuator, keep the worker's record in Redis and append the decision to the
stream. Then publish the fleet's replica recommendation. Each tick also reads the model
provider's fleet-wide slots (in use, limit, calls waiting): a saturated provider holds the
search's grows (see ``policy``).

Timing: a worker's figures reach Redis one flush late, so after a resize the change is dated
``metrics_flush_interval_s`` later in the policy's state: the first interval after it, which
still holds tasks finished at the old size, is not taken as a measurement of the new size.
The size is tracked here too (``inspect stats`` lags after a grow): the size applied counts
until the worker reports a figure taken after the change. Prefork starts the children of a grow
only at its next pool maintenance (every 5 s): until the worker reports them live, the runner
holds and keeps dating the change forward.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from orchestrator.tuner.actuation import Actuator
from orchestrator.tuner.journal import TunerJournal
from orchestrator.tuner.lease import Lease
from orchestrator.tuner.policy import (
    Decision,
    ProviderSlots,
    TunerBounds,
    TunerState,
    new_state,
    next_concurrency,
)
from orchestrator.tuner.replicas import ReplicaAdvice, advise_replicas, capacity_per_replica
from orchestrator.tuner.sample import (
    FIXED,
    Reading,
    bounds_for,
    build_sample,
    control_mode,
    provider_slots,
    reported_size,
)
from workers.core.errors import BackendUnavailableError
from workers.core.settings import Settings
from workers.providers.limits import SlotUsage, slot_usage

logger = logging.getLogger(__name__)

Figures = Callable[[], dict[str, Any]]
Slots = Callable[[], list[SlotUsage]]
SETTLE_LIMIT_S = 15.0  # longest wait for a grown pool's slots to start before judging anyway


def lease_ttl_ms(settings: Settings) -> int:
    """Three intervals, and at least 5 s: a live holder renews it well before it lapses."""
    return int(max(3 * tuner_interval(settings), 5.0) * 1000)


def tuner_interval(settings: Settings) -> float:
    """Seconds between decisions: the setting, but never less than one metrics flush."""
    return max(settings.tuner_interval_s, settings.metrics_flush_interval_s)


def describe(entry: dict[str, Any]) -> str:
    """One line for a decision: who, what, why, and whether it was applied."""
    applied = entry.get("applied", "")
    detail = f" [{entry['detail']}]" if entry.get("detail") else ""
    return f"{entry['worker']}: {entry['reason']} ({entry['rule']}; {applied}){detail}"


class TunerRunner:
    """One tuner process's loop; ``tick`` is one interval (tests call it directly)."""

    def __init__(
        self,
        settings: Settings,
        *,
        figures: Figures,
        journal: TunerJournal,
        actuator: Actuator | None = None,
        lease: Lease | None = None,
        dry_run: bool = False,
        verbose: bool = False,
        clock: Callable[[], float] = time.time,
        say: Callable[[str], None] = logger.info,
        slots: Slots | None = None,
    ) -> None:
        if actuator is None and not dry_run:
            raise ValueError("a tuner that acts needs an actuator (or dry_run=True)")
        self.settings = settings
        self.figures = figures
        self.slots: Slots = slots or (lambda: slot_usage(settings))
        self.journal = journal
        self.actuator = actuator
        self.lease = lease
        self.dry_run = dry_run
        self.verbose = verbose or dry_run
        self.clock = clock
        self.say = say
        self.interval_s = tuner_interval(settings)
        self._records: dict[str, dict[str, Any]] = {}  # dry run: nothing goes to Redis
        self._history: list[int] | None = None
        self._waiting_on: str | None = None

    # --- the loop --------------------------------------------------------------------------
    def run(self, stop: threading.Event, iterations: int | None = None) -> None:
        """Tick every interval until ``stop`` is set (or ``iterations`` ticks ran)."""
        done = 0
        try:
            while not stop.is_set() and (iterations is None or done < iterations):
                started = time.monotonic()
                try:
                    self.tick()
                except BackendUnavailableError as exc:
                    self.say(f"tuner: {exc}; retrying in {self.interval_s:g} s")
                done += 1
                stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            if self.lease is not None:
                try:
                    self.lease.release()
                except BackendUnavailableError:
                    pass  # it lapses by itself

    def tick(self) -> list[dict[str, Any]]:
        """One interval: lease, figures, a decision per worker, the replica advice."""
        if not self.dry_run and not self._hold_lease():
            return []
        metrics = self.figures()
        providers = provider_slots(self.slots())
        queued = int(metrics.get("queue", {}).get("queued") or 0)
        workers = {
            name: worker
            for name, worker in sorted(metrics.get("workers", {}).items())
            if worker.get("at") is not None
        }
        saved = self._load(list(workers))
        entries: list[dict[str, Any]] = []
        sizes: list[int] = []
        for name, worker in workers.items():
            entry, size = self._tune(name, worker, saved.get(name), queued, providers)
            sizes.append(size)
            if entry is not None:
                entries.append(entry)
                if entry["action"] != "hold" or self.verbose:
                    self.say(describe(entry))
        depth = int(metrics.get("queue", {}).get("depth") or 0)
        advice = self._advise(sizes, depth)
        if not self.dry_run:
            self.journal.append(entries)
            self._publish(advice, entries)
        elif workers:
            self.say(
                f"fleet: {advice.desired} replica(s) for depth {depth} at "
                f"{advice.capacity:g} slots a replica (raw {advice.raw})"
            )
        return entries

    def _hold_lease(self) -> bool:
        if self.lease is None:
            return True
        if self.lease.acquire():
            if self._waiting_on is not None:
                self.say("tuner: took the lease; this tuner acts now")
            self._waiting_on = None
            return True
        holder = self.lease.holder() or "nobody"
        if holder != self._waiting_on:
            self.say(
                f"tuner: waiting; the lease is held by {holder} (one tuner acts per fleet; "
                "this one takes over if that one stops)"
            )
            self._waiting_on = holder
        return False

    # --- one worker ------------------------------------------------------------------------
    def _tune(
        self,
        name: str,
        worker: dict[str, Any],
        saved: dict[str, Any] | None,
        queued: int,
        providers: tuple[ProviderSlots, ...] = (),
    ) -> tuple[dict[str, Any] | None, int]:
        """Decide (and apply) one worker's size; returns its decision entry and tracked size."""
        now = self.clock()
        mode = control_mode(worker)
        reading = Reading.of(worker, now)
        record = dict(saved or {})
        size = reported_size(worker)
        actuated_at = record.get("actuated_at")
        if actuated_at is not None and float(worker.get("at") or 0.0) <= actuated_at:
            size = int(record.get("size", size))  # the worker has not reported since the change
        bounds = bounds_for(self.settings, worker)
        limits = {"min": bounds.min_concurrency, "max": bounds.max_concurrency}
        record.update(mode=mode, size=size, bounds=limits)
        previous = record.get("reading")
        record["reading"] = asdict(reading)
        if mode == FIXED or not (worker.get("tuner") or {}).get("enabled", True):
            why = "its pool cannot be resized" if mode == FIXED else "tuner_enabled is off there"
            record.update(skipped=f"not tuned: {why}", state=None)
            self._save(name, record)
            return None, size
        record.pop("skipped", None)
        state = TunerState.from_dict(record["state"]) if record.get("state") else new_state()
        sample = None
        if previous is not None:
            sample = build_sample(worker, Reading(**previous), reading, queued, size, providers)
            if sample is not None and sample.interval_s < self.interval_s / 2:
                record["reading"] = previous  # too short to judge: let the next read extend it
                self._save(name, record)
                return None, size
        if sample is None:  # a first read, or counters that went back: start measuring
            record["state"] = asdict(state)
            self._save(name, record)
            return None, size
        if self._settling(worker, size, record, now):
            # Not a sample of the new size yet: date the change from when the slots are live.
            state.changed_at = now + self.settings.metrics_flush_interval_s
            live = worker.get("live_slots")
            entry = self._entry(name, Decision(size, size, "hold", "", "pool"), now)
            entry["reason"] = f"hold {size}: {live} of {size} slots started, waiting for the rest"
            record.update(state=asdict(state), last=entry)
            self._save(name, record)
            return entry, size
        decision, after = next_concurrency(state, sample, bounds)
        applied, detail = "held", ""
        if decision.action != "hold":
            applied, detail, size = self._apply(name, mode, decision, state, after, bounds)
            if size != decision.current:
                record.update(size=size, actuated_at=self.clock())
        entry = self._entry(name, decision, now, applied, detail)
        record.update(state=asdict(after), last=entry)
        self._save(name, record)
        return entry, size

    @staticmethod
    def _entry(
        name: str, decision: Decision, now: float, applied: str = "held", detail: str = ""
    ) -> dict[str, Any]:
        return {
            "worker": name,
            "current": decision.current,
            "target": decision.target,
            "action": decision.action,
            "rule": decision.rule,
            "reason": decision.reason,
            "at": round(now, 3),
            "applied": applied,
            "detail": detail or None,
        }

    def _settling(
        self, worker: dict[str, Any], size: int, record: dict[str, Any], now: float
    ) -> bool:
        """Whether a grow is still starting its slots (prefork: up to its 5 s maintenance)."""
        live, actuated_at = worker.get("live_slots"), record.get("actuated_at")
        if live is None or actuated_at is None or int(live) >= size:
            return False
        return now - float(actuated_at) < SETTLE_LIMIT_S

    def _apply(
        self,
        name: str,
        mode: str,
        decision: Decision,
        before: TunerState,
        after: TunerState,
        bounds: TunerBounds,
    ) -> tuple[str, str, int]:
        """Resize (unless a dry run); fix the policy state up to the size actually reached."""
        if self.dry_run or self.actuator is None:
            reached, outcome, detail = decision.current, "dry-run", ""
        else:
            result = self.actuator.resize(
                name, mode, decision.current, decision.target, bounds.min_concurrency
            )
            reached, detail = result.size, result.detail
            outcome = (
                "applied" if result.ok else ("partly" if reached != decision.current else "failed")
            )
        if reached == decision.current:  # nothing changed: the policy may try again next time
            after.target, after.changed_at, after.changed_from = (
                decision.current,
                before.changed_at,
                before.changed_from,
            )
        else:  # date the change one flush late: its first interval still holds old-size work
            after.target = reached
            after.changed_at = self.clock() + self.settings.metrics_flush_interval_s
        return outcome, detail, reached

    # --- records and the fleet --------------------------------------------------------------
    def _load(self, names: list[str]) -> dict[str, dict[str, Any]]:
        if self.dry_run:
            return {name: self._records[name] for name in names if name in self._records}
        return self.journal.load_many(names)

    def _save(self, name: str, record: dict[str, Any]) -> None:
        if self.dry_run:
            self._records[name] = record
        else:
            self.journal.save(name, record)

    def _advise(self, sizes: list[int], depth: int) -> ReplicaAdvice:
        if self._history is None:
            stored = {} if self.dry_run else self.journal.fleet()
            self._history = [int(value) for value in json.loads(stored.get("history", "[]"))]
        capacity = capacity_per_replica(sizes, self.settings.effective_concurrency)
        advice = advise_replicas(
            self._history, depth, capacity, self.settings.tuner_scale_down_intervals
        )
        self._history = advice.history
        return advice

    def _publish(self, advice: ReplicaAdvice, entries: list[dict[str, Any]]) -> None:
        summary = {
            "desired_replicas": advice.desired,
            "raw_replicas": advice.raw,
            "capacity_per_replica": advice.capacity,
            "depth": advice.depth,
            "history": json.dumps(advice.history),
            "holder": self.lease.token if self.lease is not None else "",
            "at": round(self.clock(), 3),
        }
        actions = Counter(entry["action"] for entry in entries)
        ttl_s = int(max(30.0, 10 * self.interval_s))
        self.journal.publish(summary, actions, ttl_s)
