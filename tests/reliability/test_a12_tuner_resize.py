"""A12: pools resized every 2 s while the tasks run: no WorkerLostError, lost 0, dup_effect 0.

Two workers, prefork and the resizable threads pool, run ``effect`` tasks while a loop resizes
both every 2 s through the tuner's own actuation code (``ControlActuator``: ``pool_grow``, and
``pool_shrink`` one idle slot at a time), walking each pool up and down between 1 and 8.
5,000 tasks under ``VICTOR_SOAK``; 1,000 in the default suite.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from orchestrator.harness.audit import audit
from orchestrator.tuner.actuation import ControlActuator
from tests.reliability.conftest import items, size
from workers.telemetry.fleet import get_metrics

pytestmark = [pytest.mark.redis, pytest.mark.integration]

RESIZABLE = "workers.pools.threads:ResizableThreadPool"
SIZES = (6, 2, 8, 1, 5, 3, 7, 4)
EVERY_S = 2.0


def _resize_loop(
    app, settings, hostnames: list[str], stop: threading.Event, log: list[dict]
) -> None:
    """Every 2 s, move each worker to the next size of its cycle; record what happened."""
    actuator = ControlActuator(app)
    cycles = {
        name: itertools.cycle(SIZES[index:] + SIZES[:index]) for index, name in enumerate(hostnames)
    }
    tracked: dict[str, int] = {}
    while not stop.wait(EVERY_S):
        workers = get_metrics(settings)["workers"]
        for name in hostnames:
            current = tracked.get(name) or workers.get(name, {}).get("pool_size")
            if not current:
                continue
            target = next(cycles[name])
            result = actuator.resize(name, "pool", current, target, 1)
            tracked[name] = result.size
            log.append(
                {
                    "worker": name,
                    "from": current,
                    "to": target,
                    "reached": result.size,
                    "ok": result.ok,
                    "at": time.time(),
                }
            )


def _a12(scenario_factory, worker_factory, monkeypatch, n: int, name: str) -> None:
    scenario = scenario_factory(metrics_flush_interval_s=0.5)
    monkeypatch.setenv("CELERY_CUSTOM_WORKER_POOL", RESIZABLE)
    workers = [
        worker_factory(scenario.settings, concurrency=4, pool="prefork"),
        worker_factory(scenario.settings, concurrency=4, pool="custom"),
    ]
    hostnames = [worker.hostname for worker in workers]
    log: list[dict] = []
    stop = threading.Event()
    resizer = threading.Thread(
        target=_resize_loop, args=(scenario.app, scenario.settings, hostnames, stop, log)
    )
    resizer.start()
    try:
        scenario.submit(items(name, n, ms=100))
        started = time.monotonic()
        (job,) = scenario.wait(timeout_s=120 + n / 10)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        resizer.join(30)
    assert job.status == "succeeded", job.error
    assert job.done_tasks == n
    resizes = [entry for entry in log if entry["reached"] != entry["from"]]
    by_worker = {host: sum(1 for e in resizes if e["worker"] == host) for host in hostnames}
    refused = sum(1 for entry in log if not entry["ok"])
    lost_errors = {
        w.hostname: w.log_path.read_text(errors="replace").count("WorkerLostError") for w in workers
    }
    result = audit(
        name,
        scenario.oracle,
        scenario.submitted,
        extra={
            "workers": ["prefork", "threads"],
            "resize_every_s": EVERY_S,
            "resizes": by_worker,
            "refused": refused,
            "elapsed_s": round(elapsed, 1),
            "worker_lost_errors": lost_errors,
        },
    )
    # No execution is cut short by a resize (no WorkerLostError, below). A message prefetched
    # longer than the fault tests' 6 s visibility timeout on a loaded machine is restored and
    # runs twice (seen once in 5,000 at load 19): its effect still applies once.
    result.check(max_dup_exec=max(1, n // 1000))
    assert all(count >= max(3, elapsed / EVERY_S / 3) for count in by_worker.values()), by_worker
    assert sum(lost_errors.values()) == 0, lost_errors
    sizes = {entry["reached"] for entry in log}
    assert min(sizes) <= 2 and max(sizes) >= 7, sorted(sizes)


def test_a12_pools_resized_every_2_s_lose_nothing(
    scenario_factory, worker_factory, monkeypatch
) -> None:
    _a12(scenario_factory, worker_factory, monkeypatch, size(1000, 5000), "A12")


@pytest.mark.soak
def test_a12_full_size(scenario_factory, worker_factory, monkeypatch) -> None:
    _a12(
        scenario_factory,
        worker_factory,
        monkeypatch,
        size(5000, 5000, "VICTOR_SOAK_A12_N"),
        "A12-full",
    )
