"""Helpers for the API scenarios: submissions through a real uvicorn, timings, ledger counts.

The server itself comes from ``tests.orchestrator.api.conftest`` (``serve`` / the ``live_api``
fixture, re-exported by this package's conftest); this module adds what the scenarios count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from orchestrator.bench.stats import percentile
from workers.core.errors import JobNotFoundError
from workers.core.keys import Keys
from workers.core.settings import Settings
from workers.ledger import TERMINAL

# Every API scenario raises the per-key rate limit out of the way (C6 tests it on its own).
API_OVERRIDES: dict[str, Any] = {"api_rate_limit": 10_000_000}


def effect_goal(keys: list[str], ms: int = 0, name: str = "effects") -> dict[str, Any]:
    """A goal of ``effect`` probe items, one task per item (chunk size 1)."""
    items = [{"key": key, **({"ms": ms} if ms else {})} for key in keys]
    return {"name": name, "steps": [{"skill": "effect", "items": items}], "chunk_size": 1}


@dataclass
class Answer:
    """One HTTP exchange as a client saw it."""

    status: int
    started: float
    latency_s: float
    body: dict[str, Any] | None = None
    error: str | None = None
    tag: str = ""  # what the caller sent (for example the task key), to match answers later

    @property
    def job_id(self) -> str | None:
        return None if self.body is None else self.body.get("job_id")


def post(
    client: httpx.Client,
    goal: dict[str, Any] | None = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    tag: str = "",
) -> Answer:
    """POST /v1/jobs and time it; a transport error is status 0 (never raised)."""
    started = time.time()
    clock = time.perf_counter()
    try:
        if content is not None:
            response = client.post("/v1/jobs", content=content, headers=headers)
        else:
            response = client.post("/v1/jobs", json=goal, headers=headers)
    except httpx.HTTPError as exc:
        return Answer(0, started, time.perf_counter() - clock, error=type(exc).__name__, tag=tag)
    latency = time.perf_counter() - clock
    try:
        body = response.json()
    except ValueError:
        body = None
    parsed = body if isinstance(body, dict) else None
    return Answer(response.status_code, started, latency, parsed, tag=tag)


@dataclass
class Load:
    """Concurrent clients each running ``one(index)`` until told to stop; answers are kept."""

    answers: list[Answer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, clients: int, one: Callable[[int, int], Answer]) -> Load:
        """Start ``clients`` threads; ``one(client, n)`` sends one request and returns it."""

        def loop(client: int) -> None:
            n = 0
            while not self._stop.is_set():
                answer = one(client, n)
                n += 1
                with self._lock:
                    self.answers.append(answer)

        for client in range(clients):
            thread = threading.Thread(target=loop, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout_s: float = 30) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        with self._lock:
            return list(self.answers)


def latency_summary(answers: Iterable[Answer]) -> dict[str, float | None]:
    """p50/p95/p99/max submit latency in milliseconds."""
    values = sorted(answer.latency_s * 1000 for answer in answers)
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": round(percentile(values, 0.50), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "max_ms": round(values[-1], 2),
    }


def status_counts(answers: Iterable[Answer]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for answer in answers:
        counts[str(answer.status)] = counts.get(str(answer.status), 0) + 1
    return dict(sorted(counts.items()))


def ledger_jobs(settings: Settings, tenant: str) -> set[str]:
    """The job ids the ledger holds for ``tenant`` (its jobs index)."""
    client = redis.Redis.from_url(settings.redis_url or "")
    try:
        raw = client.zrange(Keys(settings.key_prefix).jobs_index(tenant), 0, -1)
    finally:
        client.close()
    return {member.decode() for member in raw}


def wait_jobs(
    ledger: Any, job_ids: Iterable[str], timeout_s: float, expired_ok: bool = False
) -> dict[str, str]:
    """Poll the ledger until every job is terminal; fail naming the stragglers.

    With ``expired_ok`` a job whose record has already expired (short TTLs in a long run)
    counts as ``expired``: whether its tasks ran is the oracle audit's question, not this one.
    """
    pending = set(job_ids)
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while pending:
        for job_id in list(pending):
            try:
                status = ledger.get_job(job_id).status
            except JobNotFoundError:
                if not expired_ok:
                    raise
                status = "expired"
                statuses[job_id] = status
                pending.discard(job_id)
                continue
            if status in TERMINAL:
                statuses[job_id] = status
                pending.discard(job_id)
        if not pending:
            break
        if time.monotonic() > deadline:
            sample = sorted(pending)[:3]
            raise AssertionError(f"{len(pending)} job(s) unfinished after {timeout_s} s: {sample}")
        time.sleep(0.1)
    return statuses
