"""``victor tuner [--dry-run]``, ``victor tuner status [--json]`` and ``GET /v1/tuner``.

A worker row is written to Redis as a worker's main process writes it each flush, so the
tuner sees a live worker without starting one (tests/integration/test_tuner.py starts real ones).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app as victor_app
from orchestrator.tuner.journal import TunerJournal
from tests.conftest import settings_env
from workers.core.keys import Keys
from workers.core.settings import Settings
from workers.telemetry.store import RedisMetricsStore

pytestmark = [pytest.mark.redis]

HOST = "wcli@test"


def _write_worker(settings: Settings, tasks: int, **extra: Any) -> None:
    """What a prefork worker's main process flushes: its row and its running totals."""
    keys, now = Keys(settings.key_prefix), time.time()
    row = {
        "hostname": HOST,
        "pool_size": 2,
        "live_slots": 2,
        "active": 2,
        "reserved": 2,
        "pool_type": "prefork",
        "resizable": 1,
        "tuner_enabled": 1,
        "tuner_min": 1,
        "tuner_max": 8,
        "rss_mb": 150.0,
        "cpu_percent": 12.0,
        "pid": 4242,
        "at": now,
        **extra,
    }
    RedisMetricsStore(settings.state_url).write(
        [
            ("hset", keys.metrics_worker(HOST), row, 30),
            ("zadd", keys.metrics_workers(), HOST, now, 120),
            ("hset", keys.metrics_worker_totals(HOST), {"n": tasks, "run_us": tasks * 200_000}, 60),
        ]
    )


@pytest.fixture
def cli(redis_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> Any:
    settings = redis_settings(tuner_interval_s=0.2, metrics_flush_interval_s=0.1)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(victor_app, list(args), catch_exceptions=False)

    invoke.settings = settings  # type: ignore[attr-defined]
    return invoke


def test_dry_run_prints_what_it_would_do_and_records_nothing(cli) -> None:
    settings = cli.settings
    _write_worker(settings, tasks=100)
    result = cli("tuner", "--dry-run", "--iterations", "3")
    assert result.exit_code == 0, result.output
    assert f"{HOST}: grow 2->3" in result.output
    assert "dry-run" in result.output and "fleet: " in result.output
    journal = TunerJournal(settings)
    assert journal.decisions() == [] and journal.load(HOST) is None and journal.fleet() == {}


def test_status_shows_each_worker_with_its_last_decisions(cli) -> None:
    settings = cli.settings
    _write_worker(settings, tasks=100)
    journal = TunerJournal(settings)
    entry = {
        "worker": HOST,
        "current": 2,
        "target": 4,
        "action": "grow",
        "rule": "climb",
        "reason": "grow 2->4: 9.0/s at 2, nothing measured at 4",
        "at": time.time(),
        "applied": "applied",
    }
    journal.append([entry])
    journal.save(HOST, {"size": 4, "mode": "pool", "bounds": {"min": 1, "max": 8}})
    shown = cli("tuner", "status", "--json")
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.stdout)
    worker = status["workers"][HOST]
    assert worker["mode"] == "pool" and worker["pool_type"] == "prefork"
    assert worker["tracked_size"] == 4 and worker["bounds"] == {"min": 1, "max": 8}
    assert worker["decisions"][0]["reason"] == entry["reason"]
    assert status["lease"] == {"holder": None, "expires_in_s": None}
    table = cli("tuner", "status")
    assert table.exit_code == 0 and HOST in table.output and "grow 2->4" in table.output


def test_a_disabled_tuner_resizes_nothing(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_TUNER_ENABLED", "false")
    result = cli("tuner", "--iterations", "1")
    assert result.exit_code == 0 and "tuner_enabled is off" in result.output


def test_the_tuner_needs_a_fleet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VICTOR_REDIS_URL", raising=False)
    monkeypatch.delenv("VICTOR_BROKER_URL", raising=False)
    result = CliRunner().invoke(victor_app, ["tuner", "status"])
    assert result.exit_code == 2 and "VICTOR_REDIS_URL" in result.output


def test_the_api_serves_the_same_status_to_readers(redis_settings, live_api) -> None:
    api = live_api(redis_settings())
    _write_worker(api.settings, tasks=10)
    assert api.client().get("/v1/tuner").status_code == 401
    response = api.client(api.key(scopes="read")).get("/v1/tuner")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"at", "enabled", "interval_s", "lease", "fleet", "workers"}
    assert body["workers"][HOST]["mode"] == "pool"
    assert body["workers"][HOST]["note"] == "not seen by a tuner yet"
