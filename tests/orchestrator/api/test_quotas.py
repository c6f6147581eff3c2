"""Tenants are bounded: no test probes unless the fleet enables them, items and jobs capped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.orchestrator.api.conftest import LiveApi, noop_goal
from workers.core.settings import Settings


def bounded(redis_settings: Callable[..., Settings], live_api: Any, **limits: Any) -> LiveApi:
    values = {"api_probe_skills_enabled": False, "api_max_jobs_in_flight": 2, **limits}
    return live_api(redis_settings(**values))  # type: ignore[no-any-return]


def test_probe_skills_are_refused_unless_the_fleet_enables_them(
    redis_settings: Callable[..., Settings], live_api: Any
) -> None:
    live = bounded(redis_settings, live_api)
    client = live.client(live.key())
    for skill, item in (
        ("leak", {"mb": 4096}),
        ("sleep", {"ms": 600_000}),
        ("effect", {"key": "k"}),
    ):
        response = client.post("/v1/jobs", json={"steps": [{"skill": skill, "items": [item]}]})
        assert response.status_code == 403, (skill, response.text)
        assert "VICTOR_API_PROBE_SKILLS_ENABLED=true" in response.text
    enabled = live_api(redis_settings(api_probe_skills_enabled=True))
    response = enabled.client(enabled.key()).post(
        "/v1/jobs", json={"steps": [{"skill": "sleep", "items": [{"ms": 1}]}]}
    )
    assert response.status_code == 202, response.text


def test_more_items_than_a_job_may_hold_is_refused_naming_the_limit(
    redis_settings: Callable[..., Settings], live_api: Any
) -> None:
    live = bounded(redis_settings, live_api, api_max_items_per_job=5)
    client = live.client(live.key())
    response = client.post("/v1/jobs", json=noop_goal(6))
    assert response.status_code == 422, response.text
    assert "api_max_items_per_job" in response.text
    assert client.post("/v1/jobs", json=noop_goal(5)).status_code == 202


def test_jobs_in_flight_past_the_limit_get_429_with_retry_after(
    redis_settings: Callable[..., Settings], live_api: Any
) -> None:
    live = bounded(redis_settings, live_api)  # no worker: submitted jobs stay in flight
    client = live.client(live.key())
    for _ in range(2):
        assert client.post("/v1/jobs", json=noop_goal(1)).status_code == 202
    refused = client.post("/v1/jobs", json=noop_goal(1))
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"] == "5"
    assert "api_max_jobs_in_flight" in refused.text
    other = live.client(live.key(tenant="globex"))
    assert other.post("/v1/jobs", json=noop_goal(1)).status_code == 202
