"""A batch run's durable record, the set of chunks it has written, and the store contract.

The record is what makes a run resumable: which chunks are in the output, and how many bytes
of the output and errors files they fill. A chunk's lines are appended to the files first and
committed here second; a resumed run cuts the files back to the committed sizes, so a line
written before a kill but never committed is dropped and written again once.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from workers.core.errors import JobError, JobNotFoundError

ACTIVE = frozenset({"running", "interrupted"})
FINISHED = frozenset({"succeeded", "partial", "failed"})
CANCELLED = "cancelled"


class RunNotFoundError(JobNotFoundError):
    """Raised when no batch run has the requested id."""


class RunFinishedError(JobError):
    """Raised when the same command runs again after its run finished (pass --new)."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class RunCancelledError(JobError):
    """Raised when a batch run is cancelled while it runs (``victor batch cancel``)."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def fingerprint(options: dict[str, Any]) -> str:
    """The identity of a run's command: the same command again finds (and resumes) the run."""
    text = json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class RunRecord:
    """A batch run as its store holds it."""

    run_id: str
    tenant: str
    fingerprint: str
    status: str
    skill: str
    input: str
    out: str
    errors: str
    chunk_size: int
    options: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    host: str = ""
    pid: int = 0
    out_bytes: int = 0
    err_bytes: int = 0
    done_items: int = 0
    failed_items: int = 0
    chunks_done: int = 0
    total_items: int | None = None
    error: str | None = None
    result: Any = None
    elapsed_s: float | None = None  # the last driver session's, from start to the end
    items_run: int | None = None  # items that session sent to the workers
    cache_hits: int | None = None  # response-cache hits in that session (None: unknown)
    timings: str | None = None  # the per-chunk timings file (the report's histogram)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class Progress:
    """The counters a commit writes with its chunks."""

    out_bytes: int
    err_bytes: int
    done_items: int
    failed_items: int
    chunks_done: int


class ChunkSet:
    """The committed chunk indexes of a run: a bitmap (one bit a chunk, as Redis SETBIT)."""

    def __init__(self, bits: bytes = b"") -> None:
        self._bits = bytearray(bits)

    def add(self, chunk: int) -> None:
        byte, bit = divmod(chunk, 8)
        if byte >= len(self._bits):
            self._bits.extend(bytes(byte + 1 - len(self._bits)))
        self._bits[byte] |= 0x80 >> bit  # Redis numbers bits from the most significant

    def __contains__(self, chunk: object) -> bool:
        if not isinstance(chunk, int):
            return False
        byte, bit = divmod(chunk, 8)
        return byte < len(self._bits) and bool(self._bits[byte] & (0x80 >> bit))

    def __len__(self) -> int:
        return sum(bin(byte).count("1") for byte in self._bits)


class RunStore(Protocol):
    """Where run records live: Redis on a fleet, the cache directory's SQLite file embedded."""

    durable: bool

    def create(self, record: RunRecord) -> None: ...

    def get(self, run_id: str) -> RunRecord: ...

    def runs(self, tenant: str, limit: int = 50) -> list[RunRecord]: ...

    def find_latest(self, tenant: str, fingerprint: str) -> RunRecord | None:
        """The newest run of the same command (any status), or None."""
        ...

    def chunks(self, run_id: str) -> ChunkSet: ...

    def commit(self, run_id: str, chunks: list[int], progress: Progress) -> str:
        """Mark ``chunks`` written with the counters after them; return the run's status."""
        ...

    def update(self, run_id: str, **fields: Any) -> None: ...

    def close(self) -> None: ...
