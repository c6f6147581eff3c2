"""Holdings: which ledger tasks each worker holds, so that a dead worker's tasks return at once.

kombu keeps every unacked message of the fleet in its ``unacked`` hash (delivery tag ->
payload) but not which worker holds it. Each worker's main process records, per incarnation
(one start of the process), the messages of ledger tasks (``victor.batch`` / ``victor.reduce``
with a job id) it has received and not yet acked, rejected or requeued: a hash
``delivery tag -> "job_id|task_id"`` (``Keys.worker_holdings``).

- :class:`HoldingsTracker` is the main process's side: ``received`` (from ``task_received``)
  only adds to a dict; the presence thread asks for ``changes`` and writes them in one pipeline
  per round (``workers.maintenance.presence``). A message leaves the holdings once kombu marks
  it acknowledged (acked, rejected or requeued): after its outcome is recorded and acked.
- :func:`dead_incarnations` lists the incarnations in ``Keys.worker_index`` whose heartbeat
  lapsed (or was replaced by a newer incarnation with the same hostname);
  :func:`claim_holdings` hands one incarnation's holdings to exactly one caller (a Lua script
  takes and deletes the hash unless the heartbeat is back). The reconciler restores them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import redis

from workers.core.keys import Keys
from workers.core.names import BATCH_TASK, REDUCE_TASK
from workers.core.redis_client import translated

TRACKED_TASKS = frozenset({BATCH_TASK, REDUCE_TASK})

# KEYS: heartbeat, holdings, index ; ARGV: incarnation. Nil when the incarnation is alive.
_CLAIM_SCRIPT = """
local beat = redis.call('GET', KEYS[1])
if beat and string.find(beat, '"' .. ARGV[1] .. '"', 1, true) then return false end
local held = redis.call('HGETALL', KEYS[2])
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[3], ARGV[1])
return held
"""


@dataclass(frozen=True)
class HeldTask:
    """One message a worker held: its ledger job and task, and kombu's delivery tag."""

    job_id: str
    task_id: str
    tag: str


def held_value(job_id: str, task_id: str) -> str:
    """The holdings hash's value for one message."""
    return f"{job_id}|{task_id}"


def parse_held(tag: str | bytes, value: str | bytes) -> HeldTask:
    """A holdings entry back as a HeldTask."""
    tag_text = tag.decode() if isinstance(tag, bytes) else tag
    text = value.decode() if isinstance(value, bytes) else value
    job_id, _, task_id = text.partition("|")
    return HeldTask(job_id=job_id, task_id=task_id, tag=tag_text)


class HoldingsTracker:
    """Main process: the ledger tasks this worker holds, and what Redis has not seen yet.

    ``received`` runs on Celery's event loop; everything else runs on the presence thread,
    which alone owns ``_held``, ``_unwritten`` and ``_unreleased``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._new: dict[str, tuple[str, Any]] = {}  # tag -> (value, kombu message)
        self._held: dict[str, Any] = {}  # tag -> kombu message
        self._unwritten: dict[str, str] = {}  # tag -> value, held but not yet in Redis
        self._unreleased: set[str] = set()  # tags in Redis no longer held

    def received(self, request: Any) -> bool:
        """Note a received task (hot path). True when it is a ledger task worth recording."""
        if request.name not in TRACKED_TASKS:
            return False
        kwargs = request.kwargs
        job_id = kwargs.get("job_id") if isinstance(kwargs, dict) else None
        message = request.message
        tag = getattr(message, "delivery_tag", None)
        if not isinstance(job_id, str) or not job_id or tag is None:
            return False
        with self._lock:
            self._new[str(tag)] = (held_value(job_id, request.id), message)
        return True

    def changes(self) -> tuple[dict[str, str], list[str]]:
        """Tags to add (-> value) and tags to remove, since the last ``written``."""
        with self._lock:
            new, self._new = self._new, {}
        for tag, (value, message) in new.items():
            self._held[tag] = message
            self._unwritten[tag] = value
        for tag in [tag for tag, message in self._held.items() if message.acknowledged]:
            del self._held[tag]
            if self._unwritten.pop(tag, None) is None:
                self._unreleased.add(tag)  # in Redis: delete it there
        return dict(self._unwritten), sorted(self._unreleased)

    def written(self, added: dict[str, str], removed: list[str]) -> None:
        """Redis now has ``added`` and no longer has ``removed``."""
        for tag in added:
            self._unwritten.pop(tag, None)
        self._unreleased.difference_update(removed)

    def held_count(self) -> int:
        return len(self._held)


def dead_incarnations(client: redis.Redis, keys: Keys) -> list[tuple[str, str]]:
    """``(incarnation, hostname)`` of every indexed worker whose heartbeat is not its own."""
    with translated("listing worker heartbeats"):
        index = client.hgetall(keys.worker_index())
        if not index:
            return []
        entries = sorted((_text(inc), _text(host)) for inc, host in index.items())
        beats = client.mget([keys.worker_ready(host) for _, host in entries])
    return [
        (incarnation, hostname)
        for (incarnation, hostname), beat in zip(entries, beats, strict=True)
        if beat is None or f'"{incarnation}"'.encode() not in beat
    ]


def claim_holdings(
    client: redis.Redis, keys: Keys, hostname: str, incarnation: str
) -> list[HeldTask] | None:
    """Take a dead incarnation's holdings (None if its heartbeat is back); one caller wins."""
    with translated("claiming a dead worker's tasks"):
        reply = client.eval(
            _CLAIM_SCRIPT,
            3,
            keys.worker_ready(hostname),
            keys.worker_holdings(hostname, incarnation),
            keys.worker_index(),
            incarnation,
        )
    if reply is None:
        return None
    flat = list(reply)
    return [parse_held(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def return_holdings(
    client: redis.Redis, keys: Keys, hostname: str, incarnation: str, tasks: list[HeldTask]
) -> None:
    """Put claimed holdings back (their recovery failed), so that a later pass claims them."""
    if not tasks:
        return
    holdings = keys.worker_holdings(hostname, incarnation)
    with translated("returning a dead worker's tasks"):
        pipe = client.pipeline(transaction=True)
        pipe.hset(
            holdings,
            mapping={task.tag: held_value(task.job_id, task.task_id) for task in tasks},
        )
        pipe.hset(keys.worker_index(), incarnation, hostname)
        pipe.execute()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
