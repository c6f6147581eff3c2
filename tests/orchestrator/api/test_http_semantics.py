"""HTTP as clients expect it: Allow lists every method, OPTIONS answers, DELETE says it revokes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.orchestrator.api.conftest import noop_goal
from workers.core.settings import Settings

pytestmark = [pytest.mark.redis]


def test_options_and_405_list_every_method_of_the_path(
    redis_settings: Callable[..., Settings], live_api: Any
) -> None:
    live = live_api(redis_settings())
    client = live.client(live.key())
    options = client.options("/v1/jobs")
    assert options.status_code == 204
    assert options.headers["Allow"] == "GET, POST, OPTIONS"
    job_id = client.post("/v1/jobs", json=noop_goal(1)).json()["job_id"]
    assert client.options(f"/v1/jobs/{job_id}").headers["Allow"] == "GET, DELETE, OPTIONS"
    refused = client.put(f"/v1/jobs/{job_id}", json={})
    assert refused.status_code == 405
    assert refused.headers["Allow"] == "GET, DELETE, OPTIONS"
    assert "use GET, DELETE, OPTIONS" in refused.json()["error"]["message"]


def test_the_schema_describes_the_event_stream_and_what_delete_does(
    redis_settings: Callable[..., Settings], live_api: Any
) -> None:
    live = live_api(redis_settings())
    schema = live.client().get("/openapi.json").json()
    events = schema["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]
    stream = events["content"]["text/event-stream"]
    for name in ("result", "progress", "end", "error", "Last-Event-ID"):
        assert f"`{name}`" in stream["schema"]["description"] or name in events["description"]
    for model in ("TaskResult", "JobProgress", "StreamError", "Job"):
        assert model in schema["components"]["schemas"], model
    delete = schema["paths"]["/v1/jobs/{job_id}"]["delete"]
    assert "revoke" in delete["description"] and "stay readable" in delete["description"]


def test_a_revoked_job_and_its_results_stay_readable(
    redis_settings: Callable[..., Settings], live_api: Any
) -> None:
    live = live_api(redis_settings())  # no worker: the job stays running until revoked
    client = live.client(live.key())
    job_id = client.post("/v1/jobs", json=noop_goal(2)).json()["job_id"]
    revoked = client.delete(f"/v1/jobs/{job_id}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "revoked"
    assert client.get(f"/v1/jobs/{job_id}/results").status_code == 200
    again = client.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 200 and again.json()["status"] == "revoked"


def test_fastapis_own_telemetry_is_off_unless_asked_for() -> None:
    import inspect

    from fastapi import FastAPI

    from orchestrator.api.app import telemetry_options

    if "telemetry" not in inspect.signature(FastAPI).parameters:
        assert telemetry_options(Settings()) == {}  # a FastAPI without it: nothing to turn off
        return
    off = telemetry_options(Settings())["telemetry"]
    assert off == {"tracing": False, "metrics": False, "logs": False}
    assert telemetry_options(Settings(api_opentelemetry=True)) == {}
