"""Jobs through the API against a real worker and Redis: ledger first, results, SSE, revoke."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.orchestrator.api.conftest import noop_goal, wait_status
from workers.celery_app.factory import create_app

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def read_events(response: httpx.Response) -> list[tuple[float, str, str | None, Any]]:
    """(arrival time, event, id, data) for each SSE event of a streaming response."""
    events = []
    event, event_id, data = "message", None, None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            events.append((time.monotonic(), event, event_id, data))
            if event in ("end", "error"):
                break
            event, event_id, data = "message", None, None
    return events


def test_submitted_job_is_in_the_ledger_before_202_and_completes(
    redis_settings, worker_factory, live_api
) -> None:
    settings = redis_settings()
    worker_factory(settings, concurrency=2)
    live = live_api(settings)
    client = live.client(live.key())
    response = client.post("/v1/jobs", json=noop_goal(5))
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["total_tasks"] == 5
    assert response.headers["Location"] == accepted["links"]["self"]
    ledger = create_app(settings).victor.ledger
    assert ledger.get_job(accepted["job_id"]).tenant == "acme"
    job = wait_status(client, accepted["job_id"])
    assert job["status"] == "succeeded"
    assert job["done_tasks"] == 5
    results = client.get(accepted["links"]["results"], params={"limit": 2}).json()
    assert len(results["items"]) == 2 and results["next"]
    items = list(results["items"])
    while results["next"]:
        results = client.get(results["next"]).json()
        items += results["items"]
    values = [item["outcome"][0]["value"] for item in items]
    assert [item["seq"] for item in items] == [1, 2, 3, 4, 5]
    assert sorted(values) == [0, 1, 2, 3, 4]
    listed = client.get("/v1/jobs").json()
    assert accepted["job_id"] in [item["job_id"] for item in listed["items"]]


def test_job_with_reduce_finishes_through_the_chord(
    redis_settings, worker_factory, live_api
) -> None:
    settings = redis_settings()
    worker_factory(settings, concurrency=2)
    live = live_api(settings)
    client = live.client(live.key())
    goal = {
        "steps": [{"skill": "analyze_code", "paths": ["workers/core/keys.py"]}],
        "reduce": {"skill": "report", "params": {"top": 3}},
    }
    response = client.post("/v1/jobs", json=goal)
    assert response.status_code == 202, response.text
    job = wait_status(client, response.json()["job_id"])
    assert job["status"] == "succeeded", (job["error"], job.get("failures"))
    assert job["result"]["totals"]["files"] == 1


def test_first_streamed_result_arrives_long_before_the_job_ends(
    redis_settings, worker_factory, live_api
) -> None:
    settings = redis_settings()
    worker_factory(settings, concurrency=2)
    live = live_api(settings)
    client = live.client(live.key())
    items = [{"ms": 50, "value": 0}] + [{"ms": 1500, "value": index} for index in range(1, 5)]
    goal = {"steps": [{"skill": "sleep", "items": items}], "chunk_size": 1}
    job_id = client.post("/v1/jobs", json=goal).json()["job_id"]
    started = time.monotonic()
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response)
    results = [event for event in events if event[1] == "result"]
    end = events[-1]
    assert end[1] == "end" and end[3]["status"] == "succeeded"
    assert len(results) == 5
    assert {event[3]["task_id"] for event in results} == {f"{job_id}.{i}" for i in range(5)}
    first_s = results[0][0] - started
    all_s = end[0] - started
    assert first_s < all_s / 2, (first_s, all_s)
    assert any(event[1] == "progress" for event in events)

    # Resume after the first result: the stream sends only what came after it.
    resume_id = results[0][2]
    headers = {"Last-Event-ID": resume_id}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        resumed = read_events(response)
    resumed_results = [event for event in resumed if event[1] == "result"]
    assert [event[3]["seq"] for event in resumed_results] == [2, 3, 4, 5]
    assert resumed[-1][1] == "end"


def test_delete_revokes_the_jobs_tasks(redis_settings, worker_factory, live_api) -> None:
    settings = redis_settings()
    worker_factory(settings, concurrency=1)
    live = live_api(settings)
    client = live.client(live.key())
    goal = {"steps": [{"skill": "sleep", "items": [{"ms": 400}] * 10}], "chunk_size": 1}
    job_id = client.post("/v1/jobs", json=goal).json()["job_id"]
    time.sleep(0.3)
    response = client.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "revoked"
    time.sleep(1.5)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "revoked"
    assert job["done_tasks"] < 10  # revoked tasks never ran
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 200  # revoking twice is fine

    done_id = client.post("/v1/jobs", json=noop_goal(1)).json()["job_id"]
    wait_status(client, done_id)
    conflict = client.delete(f"/v1/jobs/{done_id}")
    assert conflict.status_code == 409
    assert "already succeeded" in conflict.json()["error"]["message"]


def test_readyz_needs_a_ready_worker(redis_settings, worker_factory, live_api) -> None:
    settings = redis_settings()
    live = live_api(settings)
    client = live.client()
    assert client.get("/healthz").json() == {"status": "ok"}
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["workers"] == 0
    worker_factory(settings, concurrency=1)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {
        "status": "ready",
        "redis": True,
        "workers": 1,
    }


def test_submissions_leave_no_result_subscriptions_behind(redis_settings, live_api) -> None:
    """The ledger holds results: the API process must not keep a pub/sub channel per task."""
    live = live_api(redis_settings())
    client = live.client(live.key())
    for _ in range(20):
        assert client.post("/v1/jobs", json=noop_goal(3)).status_code == 202
    backend = live.server.config.app.state.services.app.backend
    pending = sum(len(mapping) for mapping in backend._pending_results)
    consumer = backend.result_consumer
    channels = consumer._pubsub.channels if getattr(consumer, "_pubsub", None) else {}
    assert pending == 0
    assert len(channels) == 0, list(channels)[:5]


def test_event_stream_reports_an_error_event_when_redis_goes_away(live_api, tmp_path) -> None:
    from orchestrator.harness import RedisServer
    from workers.core.settings import Settings

    server = RedisServer().start()
    try:
        settings = Settings(
            redis_url=server.url,
            key_prefix="sse",
            api_keys_file=tmp_path / "keys.json",
            task_time_limit_s=20,
            task_soft_time_limit_s=18,
            visibility_timeout_s=30,
            reconciler_stale_after_s=45,
        )
        live = live_api(settings)
        client = live.client(live.key())
        job_id = client.post("/v1/jobs", json=noop_goal(2)).json()["job_id"]  # no worker
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            lines = response.iter_lines()
            for line in lines:
                if line.startswith("event: progress"):
                    break
            server.stop(kill=True)
            started = time.monotonic()
            events = read_events_from(lines)
        assert events and events[-1][1] == "error", events
        assert time.monotonic() - started < 10
    finally:
        server.close()


def read_events_from(lines) -> list[tuple[float, str, str | None, Any]]:
    class Lines:
        def iter_lines(self):
            return lines

    return read_events(Lines())  # type: ignore[arg-type]


def test_a_job_with_nothing_to_do_is_refused_with_422_naming_why(redis_settings, live_api) -> None:
    live = live_api(redis_settings())
    client = live.client(live.key())
    response = client.post("/v1/jobs", json={"steps": [{"skill": "noop", "items": []}]})
    assert response.status_code == 422, response.text
    assert "nothing to do: step 1 (noop) has no items" in response.json()["error"]["message"]


def test_a_job_whose_items_failed_is_partial_with_its_failures(
    redis_settings, worker_factory, live_api
) -> None:
    settings = redis_settings()
    worker_factory(settings, concurrency=2)
    live = live_api(settings)
    client = live.client(live.key())
    goal = {
        "steps": [{"skill": "read_file", "items": [{"path": "README.md"}, {"path": "gone.py"}]}]
    }
    response = client.post("/v1/jobs", json=goal)
    assert response.status_code == 202, response.text
    job = wait_status(client, response.json()["job_id"])
    assert (job["status"], job["items"], job["failed_items"]) == ("partial", 2, 1)
    assert job["error"] == "1 of 2 items failed"
    [group] = job["failures"]["by_reason"]
    assert group["count"] == 1 and group["examples"][0]["item"] == {"path": "gone.py"}
