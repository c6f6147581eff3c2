"""The job ledger: records and protocol, the in-memory ledger, the Redis ledger."""

from workers.ledger.memory_ledger import MemoryLedger
from workers.ledger.records import (
    FINISHED_JOB,
    RECORDED,
    REDUCE_SUFFIX,
    TERMINAL,
    JobRecord,
    Ledger,
    TaskEvent,
    reduce_task_id,
)
from workers.ledger.redis_ledger import RedisLedger

__all__ = [
    "FINISHED_JOB",
    "RECORDED",
    "REDUCE_SUFFIX",
    "TERMINAL",
    "JobRecord",
    "Ledger",
    "MemoryLedger",
    "RedisLedger",
    "TaskEvent",
    "reduce_task_id",
]
