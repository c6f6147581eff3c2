"""The fleet's run store: a hash per run, a bitmap of committed chunks, an index per tenant.

A commit is one MULTI/EXEC (SETBIT for each chunk plus the counters) that also reads the
run's status, so a ``victor batch cancel`` reaches the driver at its next commit.
"""

from __future__ import annotations

import json
import time
from typing import Any

from orchestrator.batch.record import ChunkSet, Progress, RunNotFoundError, RunRecord
from workers.core.keys import Keys
from workers.core.redis_client import redis_client, translated
from workers.ledger.records import _text

MIN_TTL_S = 7 * 86_400  # a run record outlives the ledger's results: a resume needs it


class RedisRunStore:
    """Run records in Redis, every key under ``Keys`` and with a TTL."""

    durable = True

    def __init__(self, url: str, keys: Keys, ttl_s: int) -> None:
        self._redis = redis_client(url)
        self._keys = keys
        self._ttl_s = max(ttl_s, MIN_TTL_S)

    def create(self, record: RunRecord) -> None:
        keys = self._keys
        with translated("recording a batch run"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(keys.batch_run(record.run_id), mapping=_encode(record.as_dict()))  # type: ignore[arg-type]
            pipe.expire(keys.batch_run(record.run_id), self._ttl_s)
            pipe.zadd(keys.batch_runs(record.tenant), {record.run_id: record.created_at})
            pipe.expire(keys.batch_runs(record.tenant), self._ttl_s)
            pipe.execute()

    def get(self, run_id: str) -> RunRecord:
        with translated("reading a batch run"):
            raw = self._redis.hgetall(self._keys.batch_run(run_id))
        if not raw:
            raise RunNotFoundError(f"no batch run with id {run_id!r}; see victor batch list")
        return RunRecord.from_dict({_text(key): json.loads(value) for key, value in raw.items()})

    def runs(self, tenant: str, limit: int = 50) -> list[RunRecord]:
        with translated("listing batch runs"):
            ids = self._redis.zrevrange(self._keys.batch_runs(tenant), 0, limit - 1)
        records = []
        for raw_id in ids:
            try:
                records.append(self.get(_text(raw_id)))
            except RunNotFoundError:
                continue
        return records

    def find_latest(self, tenant: str, fingerprint: str) -> RunRecord | None:
        for record in self.runs(tenant, limit=200):
            if record.fingerprint == fingerprint:
                return record
        return None

    def chunks(self, run_id: str) -> ChunkSet:
        with translated("reading a batch run's chunks"):
            bits = self._redis.get(self._keys.batch_chunks(run_id))
        return ChunkSet(bits if isinstance(bits, bytes) else b"")

    def commit(self, run_id: str, chunks: list[int], progress: Progress) -> str:
        keys = self._keys
        fields = {**vars(progress), "updated_at": time.time()}
        with translated("committing batch chunks"):
            pipe = self._redis.pipeline(transaction=True)
            for chunk in chunks:
                pipe.setbit(keys.batch_chunks(run_id), chunk, 1)
            pipe.expire(keys.batch_chunks(run_id), self._ttl_s)
            pipe.hset(keys.batch_run(run_id), mapping=_encode(fields))  # type: ignore[arg-type]
            pipe.hget(keys.batch_run(run_id), "status")
            status = pipe.execute()[-1]
        return str(json.loads(status)) if status else "running"

    def update(self, run_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        with translated("updating a batch run"):
            self._redis.hset(self._keys.batch_run(run_id), mapping=_encode(fields))  # type: ignore[arg-type]

    def close(self) -> None:
        """The client is the process's shared pool: nothing to close here."""


def _encode(values: dict[str, Any]) -> dict[str, str]:
    return {key: json.dumps(value) for key, value in values.items()}
