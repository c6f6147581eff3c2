"""Batch chunk sizes: chosen from the skill's observed time per item when none is given."""

from __future__ import annotations

import time
import uuid

import pytest

from orchestrator.batch.chunking import MAX_AUTO_CHUNK, choose_chunk_size, explicit_chunk_size
from workers.core.keys import Keys
from workers.core.settings import Settings
from workers.telemetry.fleet import skill_item_ms
from workers.telemetry.store import store_for


def embedded(**values: object) -> Settings:
    return Settings(key_prefix=f"chunk{uuid.uuid4().hex[:8]}", **values)  # type: ignore[arg-type]


def publish(settings: Settings, skill: str, units: int, run_ms: float) -> None:
    """What a worker's reporter writes for ``units`` items run in ``run_ms`` in all."""
    bucket = int(time.time() // settings.metrics_bucket_s)
    key = Keys(settings.key_prefix).metrics_bucket("skill", skill, bucket)
    fields = {"n": 1, "units": units, "run_us": int(run_ms * 1000)}
    store_for(settings).write([("hincr", key, fields, 600)])


def test_no_figures_means_chunk_size() -> None:
    settings = embedded()
    assert skill_item_ms(settings, "noop") is None
    choice = choose_chunk_size(settings, "noop", items=20_000, window=8)
    assert choice.size == settings.chunk_size == 50
    assert "no recent figures" in choice.reason


def test_a_cheap_skill_gets_large_chunks_bounded_by_the_cap_and_the_spread() -> None:
    settings = embedded()
    publish(settings, "noop", units=1000, run_ms=20.0)  # 0.02 ms per item
    assert skill_item_ms(settings, "noop") == pytest.approx(0.02)
    assert choose_chunk_size(settings, "noop", items=100_000, window=8).size == MAX_AUTO_CHUNK
    # 5,000 items over 8 chunks in flight: 313 per chunk keeps every slot busy twice over.
    assert choose_chunk_size(settings, "noop", items=5_000, window=8).size == 313
    # A short run never goes below chunk_size.
    assert choose_chunk_size(settings, "noop", items=100, window=8).size == 50


def test_a_slow_skill_keeps_small_chunks() -> None:
    settings = embedded()
    publish(settings, "sleep", units=10, run_ms=1000.0)  # 100 ms per item
    choice = choose_chunk_size(settings, "sleep", items=10_000, window=8)
    assert choice.size == 50  # 250 ms / 100 ms = 2, raised to the chunk_size floor
    settings = embedded(chunk_size=1)
    publish(settings, "sleep", units=10, run_ms=1000.0)
    assert choose_chunk_size(settings, "sleep", items=10_000, window=8).size == 2


def test_a_zero_target_or_a_set_chunk_size_turns_the_choice_off() -> None:
    settings = embedded(batch_chunk_target_ms=0)
    publish(settings, "noop", units=1000, run_ms=20.0)
    assert choose_chunk_size(settings, "noop", items=100_000, window=8).size == 50
    assert explicit_chunk_size(embedded()) is None
    assert explicit_chunk_size(embedded(chunk_size=7)) == 7
