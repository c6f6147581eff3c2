"""What the tuner keeps in Redis: each worker's record, the decision stream, the fleet summary.

* ``tuner:worker:<hostname>``: JSON with the policy's ``TunerState``, the last totals read, the
  size the tuner tracks, its mode and bounds and the last decision; expires after
  ``tuner_decisions_ttl_s`` (a worker gone that long starts afresh).
* ``tuner:decisions``: a stream, one entry per decision (worker, current, target, action, rule,
  reason, at, applied, detail), capped at ``DECISIONS_MAXLEN`` entries, entries older than
  ``tuner_decisions_ttl_s`` trimmed (``MINID``), the key itself expiring after as long idle.
* ``tuner:fleet``: a hash the metrics collector serves: desired replicas, capacity per
  replica, depth, decision counts by action, the holder; it expires when no tuner refreshes it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from workers.core.keys import Keys
from workers.core.redis_client import redis_client, translated
from workers.core.settings import Settings

DECISIONS_MAXLEN = 10_000
DECISION_FIELDS = ("worker", "current", "target", "action", "rule", "reason", "at", "applied")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_decision(fields: dict[Any, Any]) -> dict[str, Any]:
    """A stream entry back to a decision dict with numbers where numbers were."""
    entry = {_text(key): _text(value) for key, value in fields.items()}
    decision: dict[str, Any] = dict(entry)
    for name in ("current", "target"):
        if name in entry:
            decision[name] = int(entry[name])
    if "at" in entry:
        decision["at"] = float(entry["at"])
    return decision


class TunerJournal:
    """Reads and writes the tuner's keys on the fleet's Redis."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.client: Any = client if client is not None else redis_client(settings.state_url)
        self.ttl_s = settings.tuner_decisions_ttl_s

    # --- worker records --------------------------------------------------------------------
    def load(self, worker: str) -> dict[str, Any] | None:
        with translated("reading the tuner's record of a worker"):
            raw = self.client.get(self.keys.tuner_worker(worker))
        return None if raw is None else dict(json.loads(raw))

    def load_many(self, workers: list[str]) -> dict[str, dict[str, Any]]:
        if not workers:
            return {}
        with translated("reading the tuner's records"):
            raws = self.client.mget([self.keys.tuner_worker(name) for name in workers])
        return {name: json.loads(raw) for name, raw in zip(workers, raws, strict=True) if raw}

    def save(self, worker: str, record: dict[str, Any]) -> None:
        with translated("saving the tuner's record of a worker"):
            self.client.set(self.keys.tuner_worker(worker), json.dumps(record), ex=self.ttl_s)

    # --- decisions -------------------------------------------------------------------------
    def append(self, decisions: list[dict[str, Any]], now: float | None = None) -> None:
        """Add decisions to the stream; cap it by length and age; refresh its TTL."""
        if not decisions:
            return
        key = self.keys.tuner_decisions()
        now = time.time() if now is None else now
        pipe = self.client.pipeline(transaction=False)
        for decision in decisions:
            fields = {name: str(value) for name, value in decision.items() if value is not None}
            pipe.xadd(key, fields, maxlen=DECISIONS_MAXLEN, approximate=True)
        # Entry ids are the server's clock in ms: MINID drops the entries older than the TTL.
        pipe.xtrim(key, minid=f"{max(0, int((now - self.ttl_s) * 1000))}-0", approximate=False)
        pipe.expire(key, self.ttl_s)
        with translated("recording tuner decisions"):
            pipe.execute()

    def decisions(self, count: int = 500) -> list[dict[str, Any]]:
        """The latest ``count`` decisions, newest first."""
        with translated("reading tuner decisions"):
            entries = self.client.xrevrange(self.keys.tuner_decisions(), count=count)
        return [decode_decision(fields) for _, fields in entries]

    # --- fleet summary ---------------------------------------------------------------------
    def publish(self, summary: dict[str, Any], actions: Counter[str], ttl_s: int) -> None:
        """Write the fleet summary and add this interval's decisions to the counts."""
        key = self.keys.tuner_fleet()
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(key, mapping={name: str(value) for name, value in summary.items()})
        for action, count in actions.items():
            pipe.hincrby(key, f"decisions:{action}", count)
        pipe.expire(key, ttl_s)
        with translated("publishing the tuner's fleet summary"):
            pipe.execute()

    def fleet(self) -> dict[str, str]:
        with translated("reading the tuner's fleet summary"):
            raw = self.client.hgetall(self.keys.tuner_fleet())
        return {_text(key): _text(value) for key, value in raw.items()}
