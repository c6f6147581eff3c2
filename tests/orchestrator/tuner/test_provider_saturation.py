"""The tuner sees provider saturation: a saturated provider holds the search's grows.

The policy's rule as a table, and the runner's observation read from the real slot leases in
Redis (``workers.providers.limits``): every slot held and a call waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from orchestrator.tuner import ProviderSlots, TunerBounds, TunerSample, new_state, next_concurrency
from orchestrator.tuner.journal import TunerJournal
from orchestrator.tuner.runner import TunerRunner
from tests.orchestrator.tuner.test_runner import FakeWorker
from workers.core.settings import Settings
from workers.providers import slot_leases, slot_usage

BOUNDS = TunerBounds(
    min_concurrency=1,
    max_concurrency=16,
    memory_limit_mb=1024.0,
    memory_warning_threshold=0.8,
    cooldown_s=2.0,
)


def _decide(steps: list[tuple[int, float]], providers: tuple[ProviderSlots, ...]) -> Any:
    """The decision after one busy sample per (pool size, tasks a second), 2 s apart; the
    providers' slots are seen in the last sample."""
    state, decision = new_state(), None
    for index, (size, per_s) in enumerate(steps, start=1):
        sample = TunerSample(
            at=index * 2.0,
            interval_s=2.0,
            pool_size=size,
            completed=round(per_s * 2.0),
            latency_ms=1000.0 * size / per_s,
            active=size,
            reserved=size,
            queued=100,
            rss_mb=200.0 + 20.0 * size,
            providers=providers if index == len(steps) else (),
        )
        decision, state = next_concurrency(state, sample, BOUNDS)
    return decision


SATURATED = ProviderSlots("openai", in_use=4, limit=4, waiting=3)

SATURATION_TABLE = [
    pytest.param((SATURATED,), "hold", 4, "provider", id="saturated-holds"),
    pytest.param((replace(SATURATED, waiting=0),), "grow", 5, "climb", id="full-nobody-waits"),
    pytest.param((replace(SATURATED, in_use=3),), "grow", 5, "climb", id="a-slot-free"),
    pytest.param((), "grow", 5, "climb", id="no-provider"),
]


@pytest.mark.parametrize(("providers", "action", "target", "rule"), SATURATION_TABLE)
def test_a_saturated_provider_holds_a_grow(
    providers: tuple[ProviderSlots, ...], action: str, target: int, rule: str
) -> None:
    decision = _decide([(4, 20.0)], providers)
    assert (decision.action, decision.target, decision.rule) == (action, target, rule)


def test_the_hold_names_the_saturated_provider_and_its_slots() -> None:
    decision = _decide([(4, 20.0)], (SATURATED,))
    assert "provider openai saturated (4/4 slots)" in decision.reason, decision.reason
    assert "3 calls waiting" in decision.reason and "growing to 5" in decision.reason


def test_a_saturated_provider_does_not_stop_a_shrink() -> None:
    decision = _decide([(4, 20.0), (5, 25.0), (7, 35.0), (11, 20.0)], (SATURATED,))
    assert (decision.action, decision.target) == ("shrink", 9)


@pytest.mark.redis
def test_the_runner_reads_the_slot_leases_in_redis_and_holds(
    redis_settings: Callable[..., Settings],
) -> None:
    settings = redis_settings(
        provider="openai",
        openai_concurrent_requests=2,
        provider_slot_lease_s=60.0,
        tuner_min_concurrency=1,
        tuner_max_concurrency=16,
        tuner_interval_s=2.0,
        tuner_cooldown_s=4.0,
        metrics_flush_interval_s=0.5,
    )
    assert slot_usage(settings)[0].in_use == 0 and not slot_usage(settings)[0].saturated
    leases = slot_leases(settings, "openai")
    assert leases.take("worker-a", 2, 60.0) and leases.take("worker-b", 2, 60.0)
    assert not leases.take("worker-c", 2, 60.0)  # waits: counted as a waiter
    usage = slot_usage(settings)
    assert [(u.provider, u.in_use, u.limit, u.waiting) for u in usage] == [("openai", 2, 2, 1)]

    fake = FakeWorker()
    runner = TunerRunner(
        settings,
        figures=fake.figures,
        journal=TunerJournal(settings),
        actuator=fake,
        clock=lambda: fake.clock,
        say=lambda _line: None,
    )
    entries = []
    for _ in range(12):
        fake.advance()
        entries.extend(runner.tick())
    assert fake.calls == [], "a saturated provider: the pool is not grown"
    held = [entry for entry in entries if entry["rule"] == "provider"]
    assert held and "provider openai saturated (2/2 slots)" in held[0]["reason"]

    leases.release("worker-a")  # a slot frees and the waiter takes it: the search grows again
    assert leases.take("worker-c", 2, 60.0)
    assert not slot_usage(settings)[0].saturated
    for _ in range(4):
        fake.advance()
        runner.tick()
    assert fake.calls and fake.calls[0][3] > 2
