"""The tuner's settings: defaults, env names, ordering, and who reads each one."""

from __future__ import annotations

import pytest

from orchestrator.tuner.runner import lease_ttl_ms, tuner_interval
from orchestrator.tuner.sample import bounds_for
from workers.core.errors import ConfigError
from workers.core.settings import Settings


def test_defaults() -> None:
    settings = Settings()
    assert settings.tuner_enabled is True
    assert (settings.tuner_min_concurrency, settings.tuner_max_concurrency) == (1, 16)
    assert settings.tuner_interval_s == 2.0
    assert (settings.tuner_max_step, settings.tuner_cooldown_s) == (8, 2.0)
    assert settings.tuner_decisions_ttl_s == 86_400
    assert settings.tuner_scale_down_intervals == 30


def test_tuner_settings_read_their_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_TUNER_ENABLED", "false")
    monkeypatch.setenv("VICTOR_TUNER_MIN_CONCURRENCY", "3")
    monkeypatch.setenv("VICTOR_TUNER_MAX_CONCURRENCY", "9")
    monkeypatch.setenv("VICTOR_TUNER_INTERVAL_S", "5")
    monkeypatch.setenv("VICTOR_TUNER_MAX_STEP", "1")
    monkeypatch.setenv("VICTOR_TUNER_COOLDOWN_S", "12")
    settings = Settings()
    assert settings.tuner_enabled is False
    bounds = bounds_for(settings, {})
    assert (bounds.min_concurrency, bounds.max_concurrency) == (3, 9)
    assert (bounds.max_step, bounds.cooldown_s) == (1, 12.0)
    assert tuner_interval(settings) == 5.0
    assert lease_ttl_ms(settings) == 15_000


def test_the_interval_is_never_shorter_than_a_metrics_flush() -> None:
    assert tuner_interval(Settings(tuner_interval_s=0.5, metrics_flush_interval_s=2)) == 2.0


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"tuner_min_concurrency": 8, "tuner_max_concurrency": 4}, "tuner_min_concurrency"),
        ({"tuner_interval_s": 120, "tuner_decisions_ttl_s": 60}, "tuner_interval_s"),
        ({"tuner_max_concurrency": 0}, "tuner_max_concurrency"),
        ({"tuner_max_step": 0}, "tuner_max_step"),
        ({"tuner_interval_s": 0}, "tuner_interval_s"),
    ],
)
def test_bad_tuner_settings_are_refused_by_name(values: dict[str, float], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings(**values)


def test_assignment_keeps_the_bounds_ordered() -> None:
    settings = Settings(tuner_max_concurrency=4)
    with pytest.raises(ConfigError, match="tuner_min_concurrency"):
        settings.tuner_min_concurrency = 5
