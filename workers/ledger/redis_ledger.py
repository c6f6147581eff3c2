"""The Redis ledger of distributed mode: every key under ``Keys``, results recorded by Lua."""

from __future__ import annotations

import json
import time
from typing import Any

from redis.exceptions import RedisError

from workers.core.errors import JobNotFoundError
from workers.core.keys import Keys
from workers.core.redis_client import redis_client, translated
from workers.ledger.records import (
    MAX_DELTAS,
    TERMINAL,
    DeltaEvent,
    JobRecord,
    TaskEvent,
    _text,
    failed_items,
    reduce_task_id,
)

# KEYS: results, events, open, job, deliveries
# ARGV: task_id, outcome json, open member, ttl, now, worker, failed items in this outcome,
#       the job's changes channel (its followers wake on the message)
_RECORD_SCRIPT = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
local finished = 1
redis.call('XADD', KEYS[2], '*', 'task_id', ARGV[1], 'outcome', ARGV[2], 'worker', ARGV[6])
redis.call('ZREM', KEYS[3], ARGV[3])
-- A job whose record expired is not brought back as a hash of two fields.
local exists = redis.call('EXISTS', KEYS[4]) == 1
local failed = 0
if exists then
  redis.call('HSET', KEYS[4], 'updated_at', ARGV[5])
  failed = redis.call('HINCRBY', KEYS[4], 'failed_items', tonumber(ARGV[7]))
end
-- A revoked job stays revoked, whatever copy of its tasks still finishes.
if exists and redis.call('HGET', KEYS[4], 'has_reduce') == '0' and
   redis.call('HGET', KEYS[4], 'status') ~= 'revoked' and
   tonumber(redis.call('HGET', KEYS[4], 'total_tasks')) <= redis.call('HLEN', KEYS[1]) then
  -- Nothing is reported better than it was: failed items make the job partial or failed.
  local items = tonumber(redis.call('HGET', KEYS[4], 'items') or '0')
  local status = 'succeeded'
  if failed > 0 then
    status = 'partial'
    if failed >= items then status = 'failed' end
    redis.call('HSET', KEYS[4], 'error', failed .. ' of ' .. items .. ' items failed')
  end
  redis.call('HSET', KEYS[4], 'status', status)
  finished = 2
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
-- A finished task needs no delivery count (a late copy finds its recorded outcome first).
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('PUBLISH', ARGV[8], ARGV[1])
return finished
"""


def job_fields(job: JobRecord) -> dict[str, str]:
    """A job's record as the fields of its ledger hash (read back by ``get_job``)."""
    return {
        "job_id": job.job_id,
        "tenant": job.tenant,
        "name": job.name,
        "status": job.status,
        "created_at": repr(job.created_at),
        "updated_at": repr(job.updated_at),
        "total_tasks": str(job.total_tasks),
        "has_reduce": str(int(bool(job.meta.get("has_reduce")))),
        "items": str(int(job.meta.get("items", 0))),
        "failed_items": "0",
        "meta": json.dumps(job.meta),
    }


def delta_event(seq: int, fields: dict[Any, Any]) -> DeltaEvent:
    """A delta from the fields of its stream entry."""
    return DeltaEvent(
        seq,
        _text(fields[b"task_id"]),
        int(fields[b"item"]),
        int(fields[b"offset"]),
        _text(fields[b"text"]),
    )


class RedisLedger:
    """Ledger in Redis (distributed mode); every key under ``Keys``, every key with a TTL."""

    def __init__(self, url: str, keys: Keys, ttl_s: int = 86_400) -> None:
        self._redis = redis_client(url)
        self._keys = keys
        self._ttl_s = ttl_s
        self._record = self._redis.register_script(_RECORD_SCRIPT)

    def create_job(self, job: JobRecord, tasks: dict[str, dict[str, Any]], ttl_s: int) -> None:
        keys = self._keys
        job_key = keys.job(job.job_id)
        with translated("recording a job in the ledger"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(job_key, mapping=job_fields(job))  # type: ignore[arg-type]
            pipe.expire(job_key, ttl_s)
            if tasks:
                encoded = {task_id: json.dumps(spec) for task_id, spec in tasks.items()}
                pipe.hset(keys.job_tasks(job.job_id), mapping=encoded)  # type: ignore[arg-type]
                pipe.expire(keys.job_tasks(job.job_id), ttl_s)
                members = {f"{job.job_id}|{task_id}": job.created_at for task_id in tasks}
                if job.meta.get("has_reduce"):
                    members[f"{job.job_id}|{reduce_task_id(job.job_id)}"] = job.created_at
                pipe.zadd(keys.ledger_open(), members)
            pipe.zadd(keys.jobs_index(job.tenant), {job.job_id: job.created_at})
            pipe.expire(keys.jobs_index(job.tenant), ttl_s)
            pipe.execute()

    def get_job(self, job_id: str) -> JobRecord:
        with translated("reading a job from the ledger"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hgetall(self._keys.job(job_id))
            pipe.hlen(self._keys.job_results(job_id))
            raw, done = pipe.execute()
        fields = {key.decode(): value.decode() for key, value in raw.items()}
        if "job_id" not in fields:  # none, or the remains of an expired record
            raise JobNotFoundError(f"no job with id {job_id!r}")
        return JobRecord(
            job_id=fields["job_id"],
            tenant=fields["tenant"],
            name=fields["name"],
            status=fields["status"],
            created_at=float(fields["created_at"]),
            updated_at=float(fields["updated_at"]),
            total_tasks=int(fields["total_tasks"]),
            done_tasks=int(done),
            failed_items=int(fields.get("failed_items", 0)),
            result=json.loads(fields["result"]) if "result" in fields else None,
            error=fields.get("error"),
            meta=json.loads(fields.get("meta", "{}")),
        )

    def set_status(
        self, job_id: str, status: str, *, result: Any = None, error: str | None = None
    ) -> None:
        mapping: dict[str, str] = {"status": status, "updated_at": repr(time.time())}
        if result is not None:
            mapping["result"] = json.dumps(result)
        if error is not None:
            mapping["error"] = error
        with translated("updating a job in the ledger"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._keys.job(job_id), mapping=mapping)  # type: ignore[arg-type]
            if status in TERMINAL:
                pipe.zrem(self._keys.ledger_open(), f"{job_id}|{reduce_task_id(job_id)}")
            pipe.publish(self._keys.job_changes(job_id), status)
            pipe.execute()

    def watch(self, job_id: str) -> RedisJobWatch:
        """Subscribe to the job's changes channel now (a follower reads the job after this)."""
        return RedisJobWatch(self._redis, self._keys.job_changes(job_id))

    def begin_task(self, task_id: str, job_id: str | None = None) -> int:
        """Count one delivery of ``task_id``; restart its stale-after clock while it runs."""
        key = self._keys.ledger_deliveries()
        with translated("counting a delivery"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hincrby(key, task_id, 1)
            pipe.expire(key, self._ttl_s)
            if job_id is not None:
                pipe.zadd(self._keys.ledger_open(), {f"{job_id}|{task_id}": time.time()}, xx=True)
            count = pipe.execute()[0]
        return int(count)

    def begin(self, job_id: str, task_id: str) -> tuple[Any, int]:
        """One round trip at task start: the recorded outcome (or None) and the delivery count."""
        key = self._keys.ledger_deliveries()
        with translated("starting a task"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hget(self._keys.job_results(job_id), task_id)
            pipe.hincrby(key, task_id, 1)
            pipe.expire(key, self._ttl_s)
            pipe.zadd(self._keys.ledger_open(), {f"{job_id}|{task_id}": time.time()}, xx=True)
            raw, count, _, _ = pipe.execute()
        return (None if raw is None else json.loads(raw)), int(count)

    def get_result(self, job_id: str, task_id: str) -> Any:
        """The recorded outcome of ``task_id``, or None when it has not finished."""
        with translated("reading a task result"):
            raw = self._redis.hget(self._keys.job_results(job_id), task_id)
        return None if raw is None else json.loads(raw)

    def results(self, job_id: str) -> dict[str, Any]:
        """Every recorded outcome of the job, by task id."""
        with translated("reading task results"):
            raw = self._redis.hgetall(self._keys.job_results(job_id))
        return {_text(key): json.loads(value) for key, value in raw.items()}

    def record_result(self, job_id: str, task_id: str, outcome: Any, worker: str = "") -> int:
        keys = self._keys
        with translated("recording a task result"):
            created = self._record(
                keys=[
                    keys.job_results(job_id),
                    keys.job_events(job_id),
                    keys.ledger_open(),
                    keys.job(job_id),
                    keys.ledger_deliveries(),
                ],
                args=[
                    task_id,
                    json.dumps(outcome),
                    f"{job_id}|{task_id}",
                    self._ttl_s,
                    repr(time.time()),
                    worker,
                    failed_items(outcome),
                    keys.job_changes(job_id),
                ],
            )
        return int(created)

    def events(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[TaskEvent]:
        # Stream entries are numbered by position so that an event id is a plain integer.
        with translated("reading job events"):
            entries = self._redis.xrange(self._keys.job_events(job_id), count=after_seq + limit)
        events = []
        # XRANGE replies with a list (empty for a missing stream) of entries that all have fields.
        for position, (_, fields) in enumerate((entries or [])[after_seq:], start=after_seq + 1):
            assert fields is not None
            events.append(
                TaskEvent(
                    position,
                    _text(fields[b"task_id"]),
                    json.loads(fields[b"outcome"]),
                    _text(fields.get(b"worker", b"")),
                )
            )
        return events

    def publish_delta(self, job_id: str, task_id: str, item: int, offset: int, text: str) -> None:
        key = self._keys.job_deltas(job_id)
        fields = {"task_id": task_id, "item": item, "offset": offset, "text": text}
        with translated("publishing a text delta"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.xadd(key, fields, maxlen=MAX_DELTAS, approximate=True)  # type: ignore[arg-type]
            pipe.expire(key, self._ttl_s)
            pipe.execute()

    def deltas(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[DeltaEvent]:
        """The job's text deltas in publish order, numbered from 1 like ``events``."""
        with translated("reading text deltas"):
            entries = self._redis.xrange(self._keys.job_deltas(job_id), count=after_seq + limit)
        deltas = []
        for position, (_, fields) in enumerate((entries or [])[after_seq:], start=after_seq + 1):
            assert fields is not None  # stream entries always have fields
            deltas.append(delta_event(position, fields))
        return deltas

    def task_specs(self, job_id: str) -> dict[str, dict[str, Any]]:
        with translated("reading task specs"):
            raw = self._redis.hgetall(self._keys.job_tasks(job_id))
        return {_text(key): json.loads(value) for key, value in raw.items()}

    def stale_tasks(self, older_than_s: float) -> list[tuple[str, str]]:
        cutoff = time.time() - older_than_s
        with translated("scanning the ledger"):
            members = self._redis.zrangebyscore(self._keys.ledger_open(), 0, cutoff, 0, 10_000)
        pairs = []
        for member in members:
            job_id, _, task_id = _text(member).partition("|")
            pairs.append((job_id, task_id))
        return pairs

    def touch_open(self, job_id: str, task_id: str) -> None:
        """Restart a task's stale-after clock (after a re-dispatch)."""
        with translated("updating the ledger"):
            self._redis.zadd(self._keys.ledger_open(), {f"{job_id}|{task_id}": time.time()})

    def close_open(self, job_id: str, task_id: str) -> None:
        """Stop watching a task (finished, or its job expired)."""
        with translated("updating the ledger"):
            self._redis.zrem(self._keys.ledger_open(), f"{job_id}|{task_id}")

    def replay_task(self, job_id: str, task_id: str) -> None:
        """Forget a task's outcome and deliveries and open it again (a dead-letter replay)."""
        self.get_job(job_id)
        keys = self._keys
        now = time.time()
        members = {f"{job_id}|{task_id}": now}
        if self._redis.hget(keys.job(job_id), "has_reduce") == b"1":
            members[f"{job_id}|{reduce_task_id(job_id)}"] = now
        previous = self.get_result(job_id, task_id)
        with translated("replaying a task"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.hincrby(keys.job(job_id), "failed_items", -failed_items(previous))
            pipe.hdel(keys.job(job_id), "error")
            pipe.hdel(keys.job_results(job_id), task_id)
            pipe.hdel(keys.ledger_deliveries(), task_id)
            pipe.hdel(keys.dead_letters(), task_id)
            pipe.zadd(keys.ledger_open(), members)
            pipe.hset(keys.job(job_id), mapping={"status": "running", "updated_at": repr(now)})
            pipe.hdel(keys.job(job_id), "result")
            pipe.execute()

    def list_jobs(self, tenant: str, offset: int = 0, limit: int = 50) -> list[JobRecord]:
        with translated("listing jobs"):
            ids = self._redis.zrevrange(self._keys.jobs_index(tenant), offset, offset + limit - 1)
        jobs = []
        for raw_id in ids:
            try:
                jobs.append(self.get_job(_text(raw_id)))
            except JobNotFoundError:
                continue
        return jobs

    def dead_letter(self, entry: dict[str, Any]) -> None:
        with translated("dead-lettering a task"):
            self._redis.hset(self._keys.dead_letters(), entry["task_id"], json.dumps(entry))

    def dead_letters(self) -> list[dict[str, Any]]:
        with translated("listing dead letters"):
            raw = self._redis.hgetall(self._keys.dead_letters())
        return [json.loads(value) for value in raw.values()]

    def remove_dead_letter(self, task_id: str) -> bool:
        with translated("removing a dead letter"):
            return bool(self._redis.hdel(self._keys.dead_letters(), task_id))


class RedisJobWatch:
    """A follower's wake-ups: the job's changes channel, read with a timeout.

    Pub/sub is at most once, so a message lost (or a Redis away) only means the follower reads
    the job at its next timeout, as it would by polling. Once the channel fails, the watch
    sleeps out its timeouts instead (the follower's own reads say when Redis is back).
    """

    def __init__(self, client: Any, channel: str) -> None:
        self._pubsub: Any = None
        try:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(channel)
            self._pubsub = pubsub
        except (RedisError, OSError):
            self._pubsub = None

    def wait(self, timeout_s: float) -> None:
        if self._pubsub is None:
            time.sleep(timeout_s)
            return
        try:
            if self._pubsub.get_message(timeout=timeout_s) is not None:
                while self._pubsub.get_message(timeout=0.0) is not None:
                    pass  # several changes at once: one read of the job covers them all
        except (RedisError, OSError):
            self.close()
            time.sleep(timeout_s)

    def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except (RedisError, OSError):
                pass
