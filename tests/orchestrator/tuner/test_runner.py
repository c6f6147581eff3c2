"""The tuner's runner on a real Redis against a simulated worker: decisions, lease, stream.

The worker is the policy's simulator behind a fake ``get_metrics()``: each tick advances its
clock one interval at the size the actuator last set, and its running totals grow by what it
completed. No Celery worker runs here (tests/integration/test_tuner.py does that).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from orchestrator.tuner import journal as journal_module
from orchestrator.tuner.actuation import Actuation
from orchestrator.tuner.journal import TunerJournal
from orchestrator.tuner.lease import Lease
from orchestrator.tuner.runner import TunerRunner, lease_ttl_ms
from orchestrator.tuner.simulator import SimulatedWorker, saturating_backend
from workers.core.keys import Keys
from workers.core.settings import Settings
from workers.telemetry.fleet import metrics_registry, tuner_figures
from workers.telemetry.store import RedisMetricsStore
from workers.telemetry.windows import window_figures

pytestmark = [pytest.mark.redis]

NAME = "w1@test"


@dataclass
class FakeWorker:
    """A simulated worker seen through get_metrics(), resized by the actuator it serves."""

    size: int = 2
    clock: float = 1000.0
    interval_s: float = 2.0
    live_slots: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    simulated: SimulatedWorker = field(
        default_factory=lambda: SimulatedWorker(saturating_backend(optimum=8, base_rss_mb=60.0))
    )
    tasks: int = 0
    run_us: int = 0
    last: Any = None
    calls: list[tuple[str, str, int, int]] = field(default_factory=list)
    refuse: int = 0  # refuse this many resizes first

    def advance(self) -> None:
        self.last = self.simulated.sample(self.size, self.interval_s)
        self.tasks += self.last.completed
        if self.last.latency_ms is not None:
            self.run_us += int(self.last.latency_ms * 1000 * self.last.completed)
        self.clock += self.interval_s

    def figures(self) -> dict[str, Any]:
        sample = self.last
        worker = {
            "at": self.clock,
            "pool_size": self.size,
            "live_slots": self.size if self.live_slots is None else self.live_slots,
            "active": sample.active if sample else 0,
            "reserved": sample.reserved if sample else 0,
            "rss_mb": sample.rss_mb if sample else 60.0,
            "cpu_percent": 0.0,
            "pool_type": "prefork",
            "resizable": True,
            "autoscale": None,
            "tuner": {"enabled": True, "min": 1, "max": 16},
            "totals": {"tasks": self.tasks, "run_us": self.run_us},
            **self.extra,
        }
        queued = sample.queued if sample else 0
        depth = queued + worker["reserved"] + worker["active"]
        return {
            "workers": {NAME: worker},
            "queue": {"queued": queued, "depth": depth},
        }

    def resize(self, worker: str, mode: str, current: int, target: int, floor: int) -> Actuation:
        self.calls.append((worker, mode, current, target))
        if self.refuse:
            self.refuse -= 1
            return Actuation(
                current, False, 'ValueError("Can\'t shrink pool. All processes busy!")'
            )
        self.size = target
        return Actuation(target, True, "ok")


@pytest.fixture
def tuner_settings(redis_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values = {
            "tuner_min_concurrency": 1,
            "tuner_max_concurrency": 16,
            "tuner_interval_s": 2.0,
            "tuner_cooldown_s": 4.0,
            "metrics_flush_interval_s": 0.5,
            **overrides,
        }
        return redis_settings(**values)

    return build


def _runner(settings: Settings, fake: FakeWorker, **kwargs: Any) -> TunerRunner:
    journal = TunerJournal(settings)
    lines: list[str] = []
    kwargs.setdefault("actuator", fake)
    runner = TunerRunner(
        settings,
        figures=fake.figures,
        journal=journal,
        clock=lambda: fake.clock,
        say=lines.append,
        **kwargs,
    )
    runner.lines = lines  # type: ignore[attr-defined]
    return runner


def _drive(runner: TunerRunner, fake: FakeWorker, ticks: int) -> list[dict[str, Any]]:
    entries = []
    for _ in range(ticks):
        fake.advance()
        entries.extend(runner.tick())
    return entries


def test_the_runner_grows_a_worker_while_throughput_rises(tuner_settings) -> None:
    settings = tuner_settings()
    fake = FakeWorker()
    entries = _drive(_runner(settings, fake), fake, 40)
    assert fake.size >= 7, [entry["reason"] for entry in entries]
    # The step doubles while each move gains: 2 -> 3 -> 5 -> 9 (past the optimum 8).
    assert [call[3] for call in fake.calls][:3] == [3, 5, 9]
    assert all(entry["worker"] == NAME for entry in entries)
    grows = [entry for entry in entries if entry["action"] == "grow"]
    assert grows and all(entry["applied"] == "applied" for entry in grows)
    journal = TunerJournal(settings)
    stored = journal.decisions()
    assert len(stored) == len(entries)
    assert stored[0] == {k: v for k, v in entries[-1].items() if v is not None}
    record = journal.load(NAME)
    assert record is not None and record["size"] == fake.size and record["mode"] == "pool"
    assert record["bounds"] == {"min": 1, "max": 16}


def test_a_first_read_only_starts_measuring(tuner_settings) -> None:
    fake = FakeWorker()
    fake.advance()
    runner = _runner(tuner_settings(), fake)
    assert runner.tick() == []
    assert fake.calls == []


def test_dry_run_prints_decisions_and_makes_no_control_call(tuner_settings) -> None:
    settings = tuner_settings()
    fake = FakeWorker()
    runner = _runner(settings, fake, actuator=None, dry_run=True)
    entries = _drive(runner, fake, 12)
    assert fake.calls == [] and fake.size == 2
    proposed = [entry for entry in entries if entry["action"] == "grow"]
    assert proposed and all(entry["applied"] == "dry-run" for entry in proposed)
    assert any("grow 2->3" in line for line in runner.lines)  # type: ignore[attr-defined]
    assert any(line.startswith("fleet: ") for line in runner.lines)  # type: ignore[attr-defined]
    client = redis.Redis.from_url(settings.redis_url or "")
    assert client.keys(f"{settings.key_prefix}:tuner:*") == []


def test_of_two_runners_only_the_lease_holder_acts(tuner_settings) -> None:
    settings = tuner_settings()
    fake = FakeWorker()
    journal = TunerJournal(settings)
    key, ttl = journal.keys.tuner_lease(), lease_ttl_ms(settings)
    first = _runner(settings, fake, lease=Lease(journal.client, key, ttl, holder="first"))
    second = _runner(settings, fake, lease=Lease(journal.client, key, ttl, holder="second"))
    for _ in range(12):
        fake.advance()
        first.tick()
        assert second.tick() == []
    assert fake.calls, "the holder acts"
    waiting = [line for line in second.lines if "waiting" in line]  # type: ignore[attr-defined]
    assert len(waiting) == 1 and "held by first:" in waiting[0]
    acted = len(fake.calls)
    assert first.lease is not None and second.lease is not None
    first.lease.release()  # the first one stops (or its lease lapses)
    fake.advance()
    second.tick()
    assert second.lease.held and not first.lease.acquire()
    assert "took the lease" in second.lines[-1] or any(  # type: ignore[attr-defined]
        "took the lease" in line
        for line in second.lines  # type: ignore[attr-defined]
    )
    _drive(second, fake, 10)
    assert len(fake.calls) >= acted


def test_a_lease_lapses_when_its_holder_stops_renewing(tuner_settings) -> None:
    settings = tuner_settings()
    client = redis.Redis.from_url(settings.redis_url or "")
    key = Keys(settings.key_prefix).tuner_lease()
    stalled = Lease(client, key, 200, holder="stalled")
    assert stalled.acquire()
    other = Lease(client, key, 200, holder="other")
    assert not other.acquire()
    time.sleep(0.3)
    assert other.acquire()
    assert not stalled.acquire()  # its renewal compares the token: it cannot take it back
    stalled.release()  # nor drop the lease another one holds
    assert (other.holder() or "").startswith("other:")


def test_the_decision_stream_is_capped_by_length_and_age(tuner_settings, monkeypatch) -> None:
    settings = tuner_settings(tuner_decisions_ttl_s=600)
    journal = TunerJournal(settings)
    key = journal.keys.tuner_decisions()
    old_ms = int((time.time() - 3600) * 1000)
    for index in range(5):  # entries an hour old: past the 600 s TTL
        journal.client.xadd(key, {"worker": "old", "action": "hold"}, id=f"{old_ms}-{index}")
    monkeypatch.setattr(journal_module, "DECISIONS_MAXLEN", 200)
    decision = {"worker": NAME, "current": 2, "target": 4, "action": "grow", "rule": "climb"}
    for _ in range(10):
        journal.append([{**decision, "reason": "r", "at": time.time()}] * 100)
    length = journal.client.xlen(key)
    assert 200 <= length <= 300  # MAXLEN ~ trims whole nodes: within one node of the cap
    assert all(entry["worker"] == NAME for entry in journal.decisions(count=1000))
    assert 590 <= journal.client.ttl(key) <= 600
    assert journal.decisions(count=1)[0]["current"] == 2


def test_a_refused_resize_is_tried_again_at_the_next_interval(tuner_settings) -> None:
    settings = tuner_settings()
    fake = FakeWorker(refuse=1)
    entries = _drive(_runner(settings, fake), fake, 6)
    failed = [entry for entry in entries if entry["applied"] == "failed"]
    assert len(failed) == 1 and "busy" in failed[0]["detail"]
    applied = [entry for entry in entries if entry["applied"] == "applied"]
    assert applied and applied[0]["target"] == failed[0]["target"]
    assert applied[0]["at"] - failed[0]["at"] == pytest.approx(fake.interval_s)


def test_the_size_applied_counts_until_the_worker_reports_after_it(tuner_settings) -> None:
    settings = tuner_settings()
    fake = FakeWorker()
    runner = _runner(settings, fake)
    _drive(runner, fake, 3)
    assert fake.size == 3
    record = TunerJournal(settings).load(NAME)
    assert record is not None
    grown_at = record["actuated_at"]
    fake.advance()
    figures = fake.figures()
    figures["workers"][NAME].update(pool_size=2, at=grown_at)  # a flush from before the grow
    runner.figures = lambda: figures
    (entry,) = runner.tick()
    assert entry["current"] == 3 and entry["rule"] == "cooldown"


def test_a_grown_prefork_pool_is_not_judged_before_its_children_start(tuner_settings) -> None:
    settings = tuner_settings()
    fake = FakeWorker()
    runner = _runner(settings, fake)
    _drive(runner, fake, 3)
    assert fake.size == 3
    fake.live_slots = 2
    entries = _drive(runner, fake, 3)
    assert [entry["rule"] for entry in entries] == ["pool"] * 3
    assert "2 of 3 slots started" in entries[0]["reason"]
    fake.live_slots = None
    entries = _drive(runner, fake, 2)
    assert [entry["rule"] for entry in entries] == ["cooldown"] * 2 and len(fake.calls) == 1


@pytest.mark.parametrize(
    ("extra", "note"),
    [
        ({"pool_type": "solo", "resizable": False}, "cannot be resized"),
        ({"tuner": {"enabled": False, "min": 1, "max": 16}}, "tuner_enabled is off"),
    ],
)
def test_workers_that_cannot_or_may_not_be_resized_are_left_alone(
    tuner_settings, extra: dict[str, Any], note: str
) -> None:
    settings = tuner_settings()
    fake = FakeWorker(extra=extra)
    assert _drive(_runner(settings, fake), fake, 6) == []
    assert fake.calls == []
    record = TunerJournal(settings).load(NAME)
    assert record is not None and note in record["skipped"]


def test_the_replica_advice_reaches_get_metrics_and_prometheus(tuner_settings) -> None:
    settings = tuner_settings(tuner_scale_down_intervals=3)
    fake = FakeWorker()
    _drive(_runner(settings, fake), fake, 8)
    store = RedisMetricsStore(settings.state_url)
    figures = tuner_figures(store, Keys(settings.key_prefix))
    assert figures is not None
    depth = fake.figures()["queue"]["depth"]
    assert figures["depth"] == depth
    assert figures["capacity_per_replica"] == fake.size
    assert figures["desired_replicas"] >= -(-depth // fake.size)
    assert sum(figures["decisions"].values()) == 7  # the first read only measures
    metrics = {
        "fleet": window_figures({}, 1.0),
        "memory_usage": {"fleet_mb": 0},
        "queue": {"queued": 0, "reserved": 0, "active": 0, "depth": 0, "oldest_age_s": None},
        "skills": {},
        "workers": {},
        "tuner": figures,
    }
    text = metrics_registry(metrics).prometheus_text()
    assert f"victor_tuner_desired_replicas {figures['desired_replicas']}" in text
    assert 'victor_tuner_decisions_total{action="grow"}' in text
