"""The ledger's records and contract: job and task-event records, status constants, ``Ledger``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

RECORDED = 1
FINISHED_JOB = 2

# A job ends succeeded (every item), partial (some items failed) or failed (every item, or the
# job itself); nothing is reported better than it was.
TERMINAL = frozenset({"succeeded", "partial", "failed", "revoked"})
REDUCE_SUFFIX = ".reduce"


def failed_items(outcome: Any) -> int:
    """How many items of a batch outcome (a list of ``{"ok": ...}``) failed."""
    if not isinstance(outcome, list):
        return 0
    return sum(1 for entry in outcome if isinstance(entry, dict) and not entry.get("ok"))


def outcome_status(failed: int, items: int) -> str:
    """``succeeded`` when no item failed, ``failed`` when every item did, else ``partial``."""
    if failed <= 0:
        return "succeeded"
    return "failed" if failed >= items else "partial"


def outcome_error(failed: int, items: int) -> str | None:
    """The job's error line for its failed items (None when none failed)."""
    if failed <= 0:
        return None
    return f"{failed} of {items} items failed"


def _text(value: object) -> str:
    """A Redis string reply as text (the ledger's client returns bytes)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a Redis string reply, got {value!r}")


def reduce_task_id(job_id: str) -> str:
    """The task id of a job's fan-in step (also its entry in the ledger's open set)."""
    return f"{job_id}{REDUCE_SUFFIX}"


@dataclass
class TaskEvent:
    """One recorded task result, in completion order (``seq`` starts at 1)."""

    seq: int
    task_id: str
    outcome: Any
    worker: str = ""


@dataclass(frozen=True)
class DeltaEvent:
    """A piece of text a running task streamed (an ``item.delta`` event), in publish order."""

    seq: int
    task_id: str
    item: int
    offset: int
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "task_id": self.task_id,
            "item": self.item,
            "offset": self.offset,
            "text": self.text,
        }


# A job keeps at most this many deltas (the oldest go first): a bound on a runaway stream.
MAX_DELTAS = 10_000


@dataclass
class JobRecord:
    """A job as the ledger holds it."""

    job_id: str
    tenant: str
    name: str
    status: str
    created_at: float
    updated_at: float
    total_tasks: int
    done_tasks: int = 0
    failed_items: int = 0
    result: Any = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def items(self) -> int:
        """How many items the job's plan holds."""
        return int(self.meta.get("items", 0))

    def item_outcome(self) -> tuple[str, str | None]:
        """The status and error line the job's items call for (see ``outcome_status``)."""
        return (
            outcome_status(self.failed_items, self.items),
            outcome_error(self.failed_items, self.items),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "tenant": self.tenant,
            "name": self.name,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "total_tasks": self.total_tasks,
            "done_tasks": self.done_tasks,
            "items": self.items,
            "failed_items": self.failed_items,
            "result": self.result,
            "error": self.error,
            "meta": self.meta,
        }


class JobWatch(Protocol):
    """Wake-ups for a follower of one job: ``wait`` returns once the job's results or status
    change, or after ``timeout_s`` (a follower reads the job again either way)."""

    def wait(self, timeout_s: float) -> None: ...

    def close(self) -> None: ...


class Ledger(Protocol):
    """What the dispatcher, the workers, the API and the reconciler need from the ledger."""

    def create_job(self, job: JobRecord, tasks: dict[str, dict[str, Any]], ttl_s: int) -> None: ...

    def get_job(self, job_id: str) -> JobRecord: ...

    def set_status(
        self, job_id: str, status: str, *, result: Any = None, error: str | None = None
    ) -> None: ...

    def begin_task(self, task_id: str, job_id: str | None = None) -> int: ...

    def begin(self, job_id: str, task_id: str) -> tuple[Any, int]:
        """At task start: the recorded outcome of ``task_id`` (or None) and its delivery count
        after counting this delivery."""
        ...

    def get_result(self, job_id: str, task_id: str) -> Any: ...

    def results(self, job_id: str) -> dict[str, Any]: ...

    def touch_open(self, job_id: str, task_id: str) -> None: ...

    def close_open(self, job_id: str, task_id: str) -> None: ...

    def replay_task(self, job_id: str, task_id: str) -> None: ...

    def record_result(self, job_id: str, task_id: str, outcome: Any, worker: str = "") -> int:
        """Record once by task id: 0 if already recorded, RECORDED, or FINISHED_JOB when this
        result completed a job without a reduce step."""
        ...

    def events(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[TaskEvent]: ...

    def watch(self, job_id: str) -> JobWatch:
        """Start watching ``job_id`` now: changes from here on wake the watch's ``wait``."""
        ...

    def publish_delta(self, job_id: str, task_id: str, item: int, offset: int, text: str) -> None:
        """Append a streamed piece of a task's text to the job's deltas (best effort)."""
        ...

    def deltas(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[DeltaEvent]: ...

    def task_specs(self, job_id: str) -> dict[str, dict[str, Any]]: ...

    def stale_tasks(self, older_than_s: float) -> list[tuple[str, str]]: ...

    def list_jobs(self, tenant: str, offset: int = 0, limit: int = 50) -> list[JobRecord]: ...

    def dead_letter(self, entry: dict[str, Any]) -> None: ...

    def dead_letters(self) -> list[dict[str, Any]]: ...

    def remove_dead_letter(self, task_id: str) -> bool: ...
