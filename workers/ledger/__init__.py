"""The job ledger: records and protocol, the in-memory ledger, the Redis ledger."""

from workers.ledger.memory_ledger import MemoryLedger
from workers.ledger.records import (
    FINISHED_JOB,
    MAX_DELTAS,
    RECORDED,
    REDUCE_SUFFIX,
    TERMINAL,
    DeltaEvent,
    JobRecord,
    Ledger,
    TaskEvent,
    reduce_task_id,
)
from workers.ledger.redis_ledger import RedisLedger

__all__ = [
    "FINISHED_JOB",
    "MAX_DELTAS",
    "RECORDED",
    "REDUCE_SUFFIX",
    "TERMINAL",
    "DeltaEvent",
    "JobRecord",
    "Ledger",
    "MemoryLedger",
    "RedisLedger",
    "TaskEvent",
    "reduce_task_id",
]
