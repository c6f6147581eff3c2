"""Episodic and semantic memory stay within their bounds; limits warn once; recycling reads RSS."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from workers.core.settings import Settings
from workers.maintenance.episodes import (
    EpisodicMemory,
    SemanticMemory,
    consolidate_memories,
    record_episode,
)
from workers.telemetry.process import (
    check_process_memory,
    memory_state,
    use_current_rss_for_recycling,
)
from workers.telemetry.reporter import Reporter
from workers.telemetry.store import MemoryMetricsStore


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def settings_for(request, embedded_settings, redis_settings) -> Callable[..., Settings]:
    if request.param == "embedded":
        return lambda **kw: embedded_settings(key_prefix=f"vtm{uuid.uuid4().hex[:8]}", **kw)
    return redis_settings


def _episode(job_id: str, finished_at: float) -> dict:
    return {"job_id": job_id, "status": "succeeded", "finished_at": finished_at, "skills": None}


def test_episodes_stay_within_their_bound_oldest_dropped(settings_for) -> None:
    memory = EpisodicMemory(settings_for(episodic_memory_max_episodes=5))
    for index in range(12):
        memory.record(_episode(f"job{index}", 1000.0 + index))
    assert memory.count() == 5
    assert [e["job_id"] for e in memory.episodes()] == [f"job{i}" for i in range(11, 6, -1)]


def test_clear_old_episodes_drops_only_older_ones(settings_for) -> None:
    memory = EpisodicMemory(settings_for())
    now = time.time()
    memory.record(_episode("old", now - 40 * 86_400))
    memory.record(_episode("recent", now - 2 * 86_400))
    assert memory.clear_old_episodes(days=30) == 1
    assert [e["job_id"] for e in memory.episodes()] == ["recent"]


def test_episodic_memory_off_records_nothing(settings_for) -> None:
    memory = EpisodicMemory(settings_for(enable_episodic_memory=False))
    assert memory.record(_episode("j", time.time())) is False
    assert memory.count() == 0


def test_facts_stay_within_their_bound_busiest_skills_first(settings_for) -> None:
    memory = SemanticMemory(settings_for(semantic_memory_max_facts=3))
    kept = memory.replace(
        {
            "rare": {"tasks": 1, "latency_p50_ms": 1.0},
            "busy": {"tasks": 100, "latency_p50_ms": 2.0, "failure_rate": 0.0},
        }
    )
    assert kept == 3
    facts = memory.facts()
    assert memory.count() == 3
    assert facts["busy"] == {"tasks": 100, "latency_p50_ms": 2.0, "failure_rate": 0.0}
    assert "rare" not in facts


def test_consolidation_turns_finished_jobs_into_per_skill_facts(
    embedded_settings: Callable[..., Settings],
) -> None:
    settings = embedded_settings(key_prefix=f"vtc{uuid.uuid4().hex[:8]}")
    reporter = Reporter(settings)
    try:
        for job in range(3):
            for task in range(4):
                task_id = f"j{job}.{task}"
                reporter.task_started(task_id, None)
                time.sleep(0.01 if task < 3 else 0.04)
                ok = task != 0 or job != 0
                reporter.task_finished(
                    task_id,
                    "victor.batch",
                    ("sleep", [{}]),
                    {"job_id": f"j{job}"},
                    [{"ok": ok}],
                    "SUCCESS",
                )
            reporter.flush()
            record_episode(
                settings,
                {
                    "job_id": f"j{job}",
                    "status": "succeeded",
                    "created_at": time.time() - 1,
                    "updated_at": time.time(),
                },
            )
    finally:
        reporter.stop()
    result = consolidate_memories(settings, settle_s=0)
    facts = result["by_skill"]["sleep"]
    assert result["episodes"] == 3
    assert facts["tasks"] == 12
    assert facts["episodes"] == 3
    assert facts["failure_rate"] == pytest.approx(1 / 12, abs=1e-5)
    assert facts["latency_p50_ms"] == pytest.approx(10, rel=0.3)
    assert facts["latency_p99_ms"] == pytest.approx(40, rel=0.3)
    assert "rss_growth_kb_per_task" in facts
    assert SemanticMemory(settings).facts  # readable by the planner and the tuner
    from workers.maintenance.episodes import memories_for

    _, semantic = memories_for(settings)
    assert semantic.facts("sleep")["sleep"]["tasks"] == 12


def test_semantic_memory_off_keeps_no_facts(embedded_settings) -> None:
    settings = embedded_settings(
        key_prefix=f"vts{uuid.uuid4().hex[:8]}", enable_semantic_memory=False
    )
    record_episode(settings, {"job_id": "j", "status": "succeeded"})
    assert consolidate_memories(settings, settle_s=0)["facts"] == 0


@pytest.mark.parametrize(
    ("rss_mb", "state"),
    [(100, "ok"), (799, "ok"), (800, "warning"), (1024, "warning"), (1025, "over")],
)
def test_memory_state_follows_limit_and_threshold(rss_mb: float, state: str) -> None:
    assert memory_state(rss_mb, 1024, 800 / 1024) == state


def test_a_process_warns_once_per_crossing(
    embedded_settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = embedded_settings(memory_limit_mb=100, memory_warning_threshold=0.8)
    with caplog.at_level("WARNING", logger="workers.maintenance.episodes"):
        for rss in (10, 85, 90, 95, 10, 85):
            check_process_memory(settings, rss)
    assert [r.event for r in caplog.records if hasattr(r, "event")] == ["memory_warning"] * 2


def test_recycling_reads_the_current_rss_not_the_peak() -> None:
    import billiard.pool

    from workers.telemetry.process import current_rss_kb

    original = billiard.pool.mem_rss
    try:
        assert use_current_rss_for_recycling()
        block = bytearray(b"\x01") * (64 * 1_048_576)
        with_block = billiard.pool.mem_rss()
        del block
        assert billiard.pool.mem_rss() < with_block - 32 * 1024  # peak would not drop
        assert abs(billiard.pool.mem_rss() - current_rss_kb()) < 8 * 1024
        assert original() >= with_block - 4096  # billiard's own reading is the peak
    finally:
        billiard.pool.mem_rss = original


def test_memory_store_is_bounded_by_expiry() -> None:
    store = MemoryMetricsStore()
    store.write([("hset", f"k{index}", {"a": 1}, 0) for index in range(100)])
    store._next_purge = 0
    store.write([("hset", "fresh", {"a": 1}, 60)])
    assert store.key_count() == 1
