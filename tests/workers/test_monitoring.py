"""Alerts: one per breach after the debounce, one "resolved" when it clears; webhook; rules."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from workers.core.settings import Settings
from workers.telemetry.alerts import Monitor, Observation, observations, step

LATENCY = "avg_latency:fleet"


def _run(
    values: list[float | None], debounce_s: float, threshold: float = 2000.0
) -> list[tuple[int, str]]:
    """Feed one value per second (None: subject silent); return (second, event) pairs."""
    states: dict[str, Any] = {}
    fired = []
    for second, value in enumerate(values):
        found = [] if value is None else [Observation("avg_latency", "fleet", value, threshold)]
        states, events = step(states, found, float(second), debounce_s)
        fired += [(second, event["event"]) for event in events]
    return fired


@pytest.mark.parametrize(
    ("values", "debounce_s", "expected"),
    [
        ([100, 100, 100], 0, []),
        ([3000, 3000, 3000, 100], 0, [(0, "alert"), (3, "resolved")]),
        ([3000, 3000, 3000, 100, 100, 100], 2, [(2, "alert"), (5, "resolved")]),
        ([3000, 100, 3000, 100, 3000], 2, []),  # flapping under the debounce: silent
        ([3000, 3000, 3000, 100, 3000, 100, 100, 100], 2, [(2, "alert"), (7, "resolved")]),
        ([3000, 3000, None, None], 0, [(0, "alert"), (2, "resolved")]),  # silent counts clear
        ([2000, 2000], 0, []),  # at the threshold is not above it
        ([3000, 100, 3000, 100], 0, [(0, "alert"), (1, "resolved"), (2, "alert"), (3, "resolved")]),
    ],
)
def test_an_alert_fires_once_per_breach_and_resolves_once(values, debounce_s, expected) -> None:
    assert _run(values, debounce_s) == expected


def test_events_carry_rule_subject_value_and_threshold() -> None:
    _, events = step({}, [Observation("error_rate", "skill:noop", 0.2, 0.05)], 10.0, 0)
    assert events == [
        {
            "event": "alert",
            "rule": "error_rate",
            "subject": "skill:noop",
            "value": 0.2,
            "threshold": 0.05,
            "since": 10.0,
            "at": 10.0,
        }
    ]


def test_rules_read_the_guides_thresholds(embedded_settings: Callable[..., Settings]) -> None:
    settings = embedded_settings(alert_min_tasks=3)
    figures = {"avg_latency": 2500.0, "tasks": 10, "error_rate": 0.06}
    metrics = {
        "fleet": figures,
        "skills": {"sleep": {"avg_latency": 10.0, "tasks": 2, "error_rate": 1.0}},
        "workers": {"w1": {"processes": [{"pid": 7, "rss_mb": 950.0, "memory_limit_mb": 1024}]}},
    }
    found = {o.key: o for o in observations(metrics, settings)}
    assert found["avg_latency:fleet"].breached and found["avg_latency:fleet"].threshold == 2000
    assert found["error_rate:fleet"].breached and found["error_rate:fleet"].threshold == 0.05
    assert found["memory:process:w1:7"].breached  # 950/1024 > 0.9
    assert not found["avg_latency:skill:sleep"].breached
    assert "error_rate:skill:sleep" not in found  # fewer tasks than alert_min_tasks
    settings.alert_memory_fraction = 0.95
    found = {o.key: o for o in observations(metrics, settings)}
    assert not found["memory:process:w1:7"].breached


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


def _metrics(latency: float) -> dict[str, Any]:
    return {
        "fleet": {"avg_latency": latency, "tasks": 1, "error_rate": 0.0},
        "skills": {},
        "workers": {},
    }


def test_monitor_logs_and_posts_one_alert_then_one_resolved(
    embedded_settings: Callable[..., Settings],
    webhook: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = Monitor(embedded_settings(alert_debounce_s=0, alert_webhook_url=webhook))
    with caplog.at_level("INFO", logger="workers.telemetry.alerts"):
        for now, latency in enumerate([2500.0, 2600.0, 2700.0, 100.0, 100.0]):
            monitor.check(_metrics(latency), now=float(now))
    assert [event["event"] for event in _Hook.received] == ["alert", "resolved"]
    logged = [record.alert for record in caplog.records if hasattr(record, "alert")]
    assert [event["event"] for event in logged] == ["alert", "resolved"]
    assert json.loads(caplog.records[0].getMessage().split(" ", 1)[1])["rule"] == "avg_latency"


@pytest.mark.redis
def test_distributed_monitors_share_state_so_two_evaluators_fire_once(
    redis_settings: Callable[..., Settings],
) -> None:
    settings = redis_settings(alert_debounce_s=0)
    first, second = Monitor(settings), Monitor(settings)
    events = first.check(_metrics(5000.0), now=1.0) + second.check(_metrics(5000.0), now=2.0)
    assert [event["event"] for event in events] == ["alert"]
    assert [state.rule for state in second.firing()] == ["avg_latency"]
    assert [e["event"] for e in second.check(_metrics(1.0), now=3.0)] == ["resolved"]


def test_the_beat_schedule_follows_the_settings(embedded_settings) -> None:
    from workers.core.names import CLEAR_EPISODES_TASK, CONSOLIDATE_TASK, MONITOR_TASK
    from workers.maintenance.schedule import beat_schedule

    schedule = beat_schedule(
        embedded_settings(
            monitor_interval_s=7,
            memory_consolidate_interval_s=120,
            episodic_memory_retention_days=9,
        )
    )
    by_task = {entry["task"]: entry for entry in schedule.values()}
    assert by_task[MONITOR_TASK]["schedule"] == 7
    assert by_task[CONSOLIDATE_TASK]["schedule"] == 120
    assert by_task[CLEAR_EPISODES_TASK]["kwargs"] == {"days": 9}
    json.dumps(schedule)  # plain data: no pickled schedule objects


def test_the_app_carries_the_schedule_and_an_in_memory_scheduler(embedded_settings) -> None:
    from workers.celery_app.factory import create_app

    app = create_app(embedded_settings(monitor_interval_s=3))
    assert app.conf.beat_scheduler == "celery.beat:Scheduler"
    assert app.conf.beat_schedule["victor-monitor"]["schedule"] == 3
    assert "victor.monitor.check" in app.tasks
