"""The tuner on a real worker: under a backlog of ``sleep`` tasks (throughput rises with the pool
size) it grows a prefork pool and the resizable threads pool through Celery's remote control,
and afterwards every view agrees on the size: the worker's own figures, the tuner's record,
and for prefork the number of live children. A worker started with ``--autoscale`` is resized
through the ``autoscale`` command's bounds.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from orchestrator.tuner.actuation import ControlActuator
from orchestrator.tuner.journal import TunerJournal
from orchestrator.tuner.lease import Lease
from orchestrator.tuner.runner import TunerRunner, lease_ttl_ms
from orchestrator.tuner.sample import AUTOSCALE, control_mode, reported_size
from workers.celery_app.factory import create_app
from workers.core.settings import Settings
from workers.telemetry.fleet import get_metrics

pytestmark = [pytest.mark.redis, pytest.mark.integration]

RESIZABLE = "workers.pools.threads:ResizableThreadPool"
SLEEP_MS = 200
START, TOP = 2, 8


def _publish_sleeps(app: Any, count: int) -> None:
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task(
                "victor.skill.sleep", kwargs={"ms": SLEEP_MS}, ignore_result=True, producer=producer
            )


def _tasks_done(settings: Settings, hostname: str) -> int:
    worker = get_metrics(settings)["workers"].get(hostname, {})
    return int(worker.get("totals", {}).get("tasks", 0))


def _rate(settings: Settings, hostname: str, seconds: float) -> float:
    """Tasks a second the worker completes over the next ``seconds`` (from its totals)."""
    before = _tasks_done(settings, hostname)
    time.sleep(seconds)
    return (_tasks_done(settings, hostname) - before) / seconds


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_the_tuner_grows_a_pool_while_throughput_rises(
    pool: str, redis_settings, worker_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = redis_settings(
        metrics_flush_interval_s=0.2,
        tuner_interval_s=1.0,
        tuner_cooldown_s=2.5,
        tuner_min_concurrency=1,
        tuner_max_concurrency=TOP,
    )
    if pool == "threads":
        monkeypatch.setenv("CELERY_CUSTOM_WORKER_POOL", RESIZABLE)
    worker = worker_factory(
        settings, concurrency=START, pool="custom" if pool == "threads" else pool
    )
    app = create_app(settings)
    _publish_sleeps(app, 3000)
    before = _rate(settings, worker.hostname, 2.5)

    journal = TunerJournal(settings)
    lease = Lease(journal.client, journal.keys.tuner_lease(), lease_ttl_ms(settings))
    runner = TunerRunner(
        settings,
        figures=lambda: get_metrics(settings),
        journal=journal,
        actuator=ControlActuator(app),
        lease=lease,
    )
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    started = time.monotonic()
    thread.start()
    sizes: list[tuple[float, int]] = []
    try:
        while time.monotonic() - started < 45:
            size = get_metrics(settings)["workers"][worker.hostname]["pool_size"]
            sizes.append((round(time.monotonic() - started, 1), size))
            if size >= TOP - 1 and time.monotonic() - started > 8:
                break
            time.sleep(1.0)
        time.sleep(3.0)  # let the last change settle before measuring
    finally:
        stop.set()
        thread.join(10)
    after = _rate(settings, worker.hostname, 2.5)

    figures = get_metrics(settings)["workers"][worker.hostname]
    record = journal.load(worker.hostname)
    assert record is not None
    decisions = [d for d in journal.decisions(count=1000) if d["worker"] == worker.hostname]
    grows = [d for d in reversed(decisions) if d["action"] == "grow"]
    report = {
        "pool": pool,
        "sizes": sizes,
        "before_per_s": round(before, 1),
        "after_per_s": round(after, 1),
        "final": figures["pool_size"],
        "grows": [f"{d['current']}->{d['target']} ({d['applied']})" for d in grows],
    }
    print(json.dumps(report))  # the figures the closing note quotes (run with -s)
    assert grows and all(d["applied"] == "applied" for d in grows), decisions[:10]
    assert figures["pool_size"] >= TOP - 1, report
    assert after >= 2.5 * before, report
    # Every view agrees on the size: the worker's flush, the tuner's record, the processes.
    assert record["size"] == figures["pool_size"], (record, figures)
    assert figures["live_slots"] == figures["pool_size"]
    if pool == "prefork":
        assert len(worker.children()) == figures["pool_size"]
        stats = app.control.inspect([worker.hostname], timeout=2).stats()[worker.hostname]
        assert stats["pool"]["implementation"] == "workers.pools.prefork:PreforkPool"
    assert figures["pool_type"] == ("prefork" if pool == "prefork" else "threads")
    assert figures["active"] <= figures["pool_size"]

    # Shrinking through the same actuation is reported at once too. Under a backlog every
    # child may be busy for longer than one call retries: the runner goes on at its next tick,
    # and so does this test.
    actuator, size = ControlActuator(app), figures["pool_size"]
    deadline = time.monotonic() + 20
    while True:
        result = actuator.resize(worker.hostname, "pool", size, 3, 1)
        size = result.size
        if result.ok:
            break
        assert "busy" in result.detail and time.monotonic() < deadline, result
    assert size == 3, result
    deadline = time.monotonic() + 10
    while get_metrics(settings)["workers"][worker.hostname]["pool_size"] != 3:
        assert time.monotonic() < deadline, "the shrink never showed in the worker's figures"
        time.sleep(0.2)


def test_an_autoscaling_worker_is_tuned_through_its_autoscale_bounds(
    redis_settings, worker_factory
) -> None:
    """A worker started with --autoscale refuses pool_grow; the tuner moves its ceiling."""
    settings = redis_settings(metrics_flush_interval_s=0.2)
    worker = worker_factory(settings, concurrency=2, extra_args=["--autoscale=6,2"])
    app = create_app(settings)

    def figures() -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while (found := get_metrics(settings)["workers"].get(worker.hostname)) is None:
            assert time.monotonic() < deadline, "the worker never reported"
            time.sleep(0.1)
        return found

    seen = figures()
    assert seen["autoscale"] == {"min": 2, "max": 6, "limit": 6}
    assert control_mode(seen) == AUTOSCALE and reported_size(seen) == 6
    refused = app.control.pool_grow(1, destination=[worker.hostname], reply=True, timeout=2)
    assert "error" in refused[0][worker.hostname]  # Celery: "not supported with autoscale"
    result = ControlActuator(app).resize(worker.hostname, AUTOSCALE, 6, 3, 2)
    assert result.ok and result.size == 3, result
    deadline = time.monotonic() + 10
    while reported_size(figures()) != 3:
        assert time.monotonic() < deadline, figures()
        time.sleep(0.2)
    assert figures()["autoscale"]["max"] == 6  # the range it was started with stays its bound
