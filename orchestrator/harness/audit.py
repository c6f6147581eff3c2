"""The audit every fault test ends with (RELIABILITY.md): lost, unexpected, dup_exec, ...

Executions are recorded by the ``effect`` probe skill in an oracle file the test never kills
(``VICTOR_AUDIT_PATH``): one ``start`` line when an execution begins and one ``end`` line when
it finishes, with ``effect`` true when its ``SET NX effect:{task_key}`` applied the side
effect. A killed execution leaves a ``start`` line only.

After the run the test drains, then calls :func:`audit` with the task keys it submitted; the
figures are written as JSON to ``audit-results/<scenario>.json`` (``VICTOR_AUDIT_RESULTS``
names another directory) so a run can be compared with the last one.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Execution:
    """One execution of a task key: ``outcome`` is ``ok`` or ``killed`` (no end recorded)."""

    task_key: str
    attempt: int
    worker: str
    pid: int
    start: float
    end: float | None
    outcome: str
    effect: bool = False


@dataclass
class AuditResult:
    """The audit's figures for one scenario (see RELIABILITY.md for what each must be)."""

    scenario: str
    accepted: int
    completed: int
    lost: int
    unexpected: int
    dup_exec: int
    dup_effect: int
    recovery_s: float | None
    executions: int
    failed_by_policy: int = 0
    interrupted: int = 0
    requeue_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, directory: Path | None = None) -> Path:
        directory = directory or results_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.scenario}.json"
        path.write_text(json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n")
        return path

    def check(self, *, max_dup_exec: int | None = None) -> None:
        """Raise AssertionError naming every figure that breaks the scenario's bounds."""
        problems = []
        for name in ("lost", "unexpected", "dup_effect"):
            if getattr(self, name):
                problems.append(f"{name} = {getattr(self, name)}")
        if max_dup_exec is not None and self.dup_exec > max_dup_exec:
            problems.append(f"dup_exec = {self.dup_exec} > {max_dup_exec}")
        if problems:
            raise AssertionError(f"audit of {self.scenario} failed: {', '.join(problems)}")


def results_dir() -> Path:
    return Path(os.environ.get("VICTOR_AUDIT_RESULTS") or ROOT / "audit-results")


def read_executions(oracle: Path) -> list[Execution]:
    """Pair the oracle's start and end lines into executions, numbered per task key."""
    starts: dict[tuple[str, int, float], dict[str, Any]] = {}
    ends: dict[tuple[str, int, float], dict[str, Any]] = {}
    if oracle.exists():
        for line in oracle.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            ident = (record["task_key"], int(record["pid"]), float(record["start"]))
            (starts if record["kind"] == "start" else ends)[ident] = record
    by_key: dict[str, list[tuple[str, int, float]]] = defaultdict(list)
    for ident in starts.keys() | ends.keys():
        by_key[ident[0]].append(ident)
    executions = []
    for key, idents in by_key.items():
        for attempt, ident in enumerate(sorted(idents, key=lambda item: item[2]), start=1):
            start = starts.get(ident) or ends[ident]
            end = ends.get(ident)
            executions.append(
                Execution(
                    task_key=key,
                    attempt=attempt,
                    worker=start["worker"],
                    pid=ident[1],
                    start=ident[2],
                    end=None if end is None else float(end["end"]),
                    outcome="killed" if end is None else str(end["outcome"]),
                    effect=bool(end and end.get("effect")),
                )
            )
    executions.sort(key=lambda execution: execution.start)
    return executions


def recovery(
    executions: list[Execution], fault_at: float, window_s: float = 1.0
) -> tuple[float | None, float | None, int]:
    """Seconds from the fault until throughput is back to 90% and interrupted tasks finished.

    Returns ``(recovery_s, requeue_s, interrupted)``. The baseline is the completion rate over
    the (up to) 3 s before the fault; ``requeue_s`` is when the last task in flight at the fault
    finished on a later attempt. ``recovery_s`` is the later of the two (None without data).
    """
    ends = sorted(e.end for e in executions if e.end is not None and e.outcome == "ok")
    interrupted = {
        e.task_key
        for e in executions
        if e.start <= fault_at and (e.end is None or e.end > fault_at)
    }
    finished: dict[str, float] = {}
    for e in executions:
        if e.task_key in interrupted and e.end is not None and e.outcome == "ok":
            finished[e.task_key] = min(finished.get(e.task_key, e.end), e.end)
    requeue_s = (
        round(max(finished.values()) - fault_at, 3)
        if interrupted and len(finished) == len(interrupted)
        else None
    )
    before = [t for t in ends if t <= fault_at]
    throughput_s: float | None = None
    if before and ends[-1] > fault_at:
        span = min(3.0, fault_at - before[0]) or window_s
        baseline = sum(1 for t in before if t >= fault_at - span) / span
        target = 0.9 * baseline * window_s
        after = [t for t in ends if t > fault_at]
        step = 0.05
        start = fault_at
        while start + window_s <= after[-1] + step:
            count = sum(1 for t in after if start <= t < start + window_s)
            if count >= target:
                throughput_s = round(start - fault_at, 3)
                break
            start += step
        if throughput_s is None:  # drained before a full window: recovered when drained
            throughput_s = round(after[-1] - fault_at, 3)
    candidates = [value for value in (throughput_s, requeue_s) if value is not None]
    return (max(candidates) if candidates else None), requeue_s, len(interrupted)


def audit(
    scenario: str,
    oracle: Path,
    submitted: Iterable[str],
    *,
    failed_by_policy: Iterable[str] = (),
    fault_at: float | None = None,
    extra: dict[str, Any] | None = None,
    write: bool = True,
) -> AuditResult:
    """Count the scenario's figures from the oracle and the keys the test submitted."""
    accepted = set(submitted)
    policy = set(failed_by_policy)
    executions = read_executions(oracle)
    succeeded = {e.task_key for e in executions if e.outcome == "ok"}
    completed = succeeded | policy
    effects = Counter(e.task_key for e in executions if e.effect)
    recovery_s, requeue_s, interrupted = (
        recovery(executions, fault_at) if fault_at is not None else (None, None, 0)
    )
    result = AuditResult(
        scenario=scenario,
        accepted=len(accepted),
        completed=len(completed & accepted),
        lost=len(accepted - completed),
        unexpected=len(completed - accepted),
        dup_exec=len(executions) - len(completed),
        dup_effect=sum(count - 1 for count in effects.values() if count > 1),
        recovery_s=recovery_s,
        executions=len(executions),
        failed_by_policy=len(policy),
        interrupted=interrupted,
        requeue_s=requeue_s,
        extra=dict(extra or {}),
    )
    if write:
        result.write()
    return result


def assert_reconnected(
    oracle: Path, workers: list[Any], pids: list[int], back_at: float, within_s: float = 10
) -> dict[str, float]:
    """Every worker ran a task within ``within_s`` of Redis coming back, without a restart.

    Returns the seconds each worker took to start its first task after ``back_at``.
    """
    records = [json.loads(line) for line in oracle.read_text().splitlines()]
    reconnect_s = {}
    for worker in workers:
        after = [
            record["start"]
            for record in records
            if record["kind"] == "start"
            and record["worker"] == worker.hostname
            and record["start"] > back_at
        ]
        assert after, f"{worker.hostname} ran nothing after the restart"
        reconnect_s[worker.hostname] = round(min(after) - back_at, 3)
    assert max(reconnect_s.values()) < within_s, reconnect_s
    assert [worker.pid for worker in workers] == pids
    assert all(w.process is not None and w.process.poll() is None for w in workers)
    return reconnect_s
