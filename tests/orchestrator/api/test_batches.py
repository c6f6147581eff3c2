"""Batch runs through the API on a real worker and Redis: start, follow, read, cancel, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.api.batches import BatchRunner, batch_root
from tests.conftest import ROOT, settings_env
from tests.orchestrator.api.conftest import LiveApi
from workers.core.settings import Settings

pytestmark = [pytest.mark.redis, pytest.mark.integration]

FINISHED = ("succeeded", "partial", "failed", "cancelled", "interrupted")


def runner_of(live: LiveApi) -> BatchRunner:
    return live.server.config.app.state.batch_runner  # type: ignore[no-any-return]


@pytest.fixture
def fleet(redis_settings, worker_factory, live_api, tmp_path) -> Iterator[Callable[..., LiveApi]]:
    """An API (with a worker) per call; runs still driven at the end are cancelled and joined,
    so no driver outlives the test's Redis prefix."""
    started: list[LiveApi] = []

    def start(workers: bool = True, **overrides: Any) -> LiveApi:
        settings = redis_settings(batch_dir=str(tmp_path / "batches"), **overrides)
        if workers:
            worker_factory(settings, concurrency=2)
        live = live_api(settings)
        started.append(live)
        return live

    yield start
    for live in started:
        runner = runner_of(live)
        for run_id in runner.running():
            runner.store.update(run_id, status="cancelled")
        assert runner.wait(30) == []


def noop_batch(count: int, **extra: Any) -> dict[str, Any]:
    return {"skill": "noop", "items": [{"value": index} for index in range(count)], **extra}


def read_events(response: httpx.Response) -> list[tuple[str, str | None, Any]]:
    """(event, id, data) for each SSE event, up to the stream's end."""
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
            events.append((event, event_id, data))
            event, event_id, data = "message", None, None
    return events


def wait_run(client: httpx.Client, run_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.get(f"/v1/batches/{run_id}").json()
        if run["status"] in FINISHED:
            return run  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"run {run_id} not finished: {run}"
        time.sleep(0.1)


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def test_a_run_is_followed_to_its_end_and_its_results_hold_every_item_once(fleet, tmp_path) -> None:
    live = fleet()
    client = live.client(live.key())
    response = client.post("/v1/batches", json=noop_batch(250, chunk_size=20, id_field="value"))
    assert response.status_code == 202, response.text
    accepted = response.json()
    run_id = accepted["id"]
    assert accepted["status"] == "running" and accepted["items"] == 250
    assert response.headers["Location"] == accepted["links"]["self"] == f"/v1/batches/{run_id}"
    with client.stream("GET", accepted["links"]["events"]) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = read_events(stream)
    assert events[-1][0] == "end" and events[-1][2]["status"] == "succeeded"
    assert all(name == "progress" for name, _, _ in events[:-1])
    done = [data["done"] for name, _, data in events if name == "progress"]
    assert done == sorted(done) and done[-1] == 250

    run = client.get(f"/v1/batches/{run_id}").json()
    assert run["status"] == "succeeded"
    assert (run["items"], run["done_items"], run["failed_items"]) == (250, 250, 0)
    assert run["items_per_s"] > 0 and run["skill"] == "noop"
    lines = ndjson(client.get(accepted["links"]["results"]))
    assert sorted(line["index"] for line in lines) == list(range(250))
    assert all(line["ok"] and line["result"] == line["index"] == line["id"] for line in lines)
    assert ndjson(client.get(accepted["links"]["results"], params={"failed": "true"})) == []
    # The run's files live under batch_dir, by tenant and run id; the record has the tenant.
    assert (tmp_path / "batches" / "acme" / run_id / "input.jsonl").is_file()
    assert runner_of(live).store.get(run_id).tenant == "acme"
    listed = client.get("/v1/batches").json()["items"]
    assert [item["id"] for item in listed] == [run_id]


def test_a_reconnect_with_last_event_id_skips_progress_already_seen(fleet) -> None:
    live = fleet()
    client = live.client(live.key())
    run_id = client.post("/v1/batches", json=noop_batch(30)).json()["id"]
    wait_run(client, run_id)
    with client.stream(
        "GET", f"/v1/batches/{run_id}/events", headers={"Last-Event-ID": "30"}
    ) as stream:
        events = read_events(stream)
    assert [(name, event_id) for name, event_id, _ in events] == [("end", "30")]


def test_failed_items_are_listed_with_failed_true(fleet) -> None:
    live = fleet()
    client = live.client(live.key())
    items = [{"mb": 0, "keep": False, "fail": index % 3 == 0} for index in range(12)]
    accepted = client.post("/v1/batches", json={"skill": "leak", "items": items}).json()
    run = wait_run(client, accepted["id"])
    assert (run["status"], run["failed_items"]) == ("partial", 4)
    failed = ndjson(client.get(accepted["links"]["results"], params={"failed": "true"}))
    assert sorted(line["index"] for line in failed) == [0, 3, 6, 9]
    assert all(line["skill"] == "leak" and line["item"]["fail"] for line in failed)


def test_an_item_that_does_not_fit_the_skill_is_422_naming_the_field(fleet) -> None:
    live = fleet(workers=False)
    client = live.client(live.key())
    bad_item = {"skill": "sleep", "items": [{"ms": 1}, {"ms": "soon"}]}
    response = client.post("/v1/batches", json=bad_item)
    assert response.status_code == 422, response.text
    fields = [problem["field"] for problem in response.json()["error"]["fields"]]
    assert fields == ["items.1.ms"]
    assert "GET /v1/skills" in response.json()["error"]["message"]
    bad_params = {"skill": "sleep", "items": [{}, {}], "params": {"ms": -1}}
    fields = [
        p["field"] for p in client.post("/v1/batches", json=bad_params).json()["error"]["fields"]
    ]
    assert fields == ["params.ms"]
    unknown = client.post("/v1/batches", json={"skill": "slep", "items": [{}]}).json()["error"]
    assert unknown["fields"][0]["field"] == "skill" and "known skills" in unknown["message"]
    # A file outside the allowed roots is refused as the jobs route refuses it, naming it.
    outside = {"skill": "read_file", "items": [{"path": "/etc/hostname"}]}
    refused = client.post("/v1/batches", json=outside)
    assert refused.status_code == 422, refused.text
    problem = refused.json()["error"]["fields"][0]
    assert problem["field"] == "items.0.path" and "VICTOR_ALLOWED_ROOTS" in problem["message"]
    empty = client.post("/v1/batches", json={"skill": "noop", "items": []})
    assert empty.status_code == 422 and empty.json()["error"]["fields"][0]["field"] == "items"
    assert client.get("/v1/batches").json()["items"] == []


def test_items_are_bounded_by_api_max_batch_items_and_the_body_limit(fleet) -> None:
    live = fleet(workers=False, api_max_batch_items=5, api_max_body_bytes=4096)
    client = live.client(live.key())
    too_many = client.post("/v1/batches", json=noop_batch(6))
    assert too_many.status_code == 422
    assert "api_max_batch_items" in too_many.json()["error"]["message"]
    too_large = client.post("/v1/batches", json={"skill": "noop", "items": [{"value": "x" * 5000}]})
    assert too_large.status_code == 413


def test_another_tenant_gets_404_for_a_run(fleet) -> None:
    live = fleet()
    owner = live.client(live.key(tenant="acme"))
    stranger = live.client(live.key(tenant="globex"))
    run_id = owner.post("/v1/batches", json=noop_batch(3)).json()["id"]
    for path in ("", "/results", "/events"):
        response = stranger.get(f"/v1/batches/{run_id}{path}")
        assert response.status_code == 404, (path, response.text)
    assert stranger.post(f"/v1/batches/{run_id}/cancel").status_code == 404
    assert stranger.get("/v1/batches").json()["items"] == []
    assert wait_run(owner, run_id)["status"] == "succeeded"


def test_an_idempotent_replay_returns_the_same_run(fleet, redis_url, key_prefix) -> None:
    import redis

    live = fleet()
    client = live.client(live.key())
    headers = {"Idempotency-Key": "nightly-2024-05-01"}
    first = client.post("/v1/batches", json=noop_batch(4), headers=headers)
    second = client.post("/v1/batches", json=noop_batch(4), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    other = client.post("/v1/batches", json=noop_batch(5), headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_mismatch"
    assert len(client.get("/v1/batches").json()["items"]) == 1
    store = redis.Redis.from_url(redis_url)
    keys = list(store.scan_iter(match=f"{key_prefix}:idem:*"))
    assert len(keys) == 1 and 0 < store.ttl(keys[0]) <= live.settings.api_idempotency_ttl_s
    store.close()


def test_batches_need_a_key_and_submit_needs_the_submit_scope(fleet) -> None:
    live = fleet(workers=False)
    anonymous = live.client()
    assert anonymous.post("/v1/batches", json=noop_batch(1)).status_code == 401
    assert anonymous.get("/v1/batches").status_code == 401
    assert anonymous.get("/v1/batches/abc").status_code == 401
    reader = live.client(live.key(scopes="read"))
    refused = reader.post("/v1/batches", json=noop_batch(1))
    assert refused.status_code == 403 and "submit" in refused.json()["error"]["message"]


def test_cancel_stops_a_run_and_its_events_end_with_cancelled(fleet) -> None:
    live = fleet()
    client = live.client(live.key())
    batch = {"skill": "sleep", "items": [{"ms": 150} for _ in range(60)], "chunk_size": 1}
    accepted = client.post("/v1/batches", json=batch).json()
    run_id = accepted["id"]
    with client.stream("GET", accepted["links"]["events"]) as stream:
        cancelled = client.post(accepted["links"]["cancel"])
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        events = read_events(stream)
    assert events[-1][0] == "end" and events[-1][2]["status"] == "cancelled"
    assert runner_of(live).wait(15) == []
    run = client.get(f"/v1/batches/{run_id}").json()
    assert run["status"] == "cancelled" and run["done_items"] < 60
    assert client.post(accepted["links"]["cancel"]).json()["status"] == "cancelled"
    finished = client.post("/v1/batches", json=noop_batch(2)).json()
    wait_run(client, finished["id"])
    assert client.post(finished["links"]["cancel"]).status_code == 409


def test_a_run_the_api_stopped_driving_resumes_with_victor_batch_resume(fleet) -> None:
    """The API process's driver is gone (here: cancelled mid-run); the CLI finishes the run
    from its record and the API's files, each item once."""
    live = fleet()
    client = live.client(live.key())
    batch = {"skill": "sleep", "items": [{"ms": 20, "value": i} for i in range(80)]}
    accepted = client.post("/v1/batches", json={**batch, "chunk_size": 2}).json()
    run_id = accepted["id"]
    deadline = time.monotonic() + 30
    while client.get(f"/v1/batches/{run_id}").json()["done_items"] < 10:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.post(accepted["links"]["cancel"])
    assert runner_of(live).wait(15) == []
    stopped = client.get(f"/v1/batches/{run_id}").json()["done_items"]
    assert 10 <= stopped < 80
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "batch", "--resume", run_id, "-q", "--json"],
        env={**os.environ, **settings_env(live.settings)},
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    run = client.get(f"/v1/batches/{run_id}").json()
    assert (run["status"], run["done_items"]) == ("succeeded", 80)
    lines = ndjson(client.get(accepted["links"]["results"]))
    assert sorted(line["index"] for line in lines) == list(range(80))
    assert Path(runner_of(live).store.get(run_id).out).is_file()


def test_batch_dir_defaults_to_batches_under_the_cache_dir(tmp_path) -> None:
    assert batch_root(Settings(cache_dir=str(tmp_path))) == tmp_path / "batches"
    chosen = Settings(cache_dir=str(tmp_path), batch_dir=str(tmp_path / "runs"))
    assert batch_root(chosen) == tmp_path / "runs"


def test_a_run_with_a_reduce_records_its_value(fleet) -> None:
    live = fleet()
    client = live.client(live.key())
    paths = ["tasks/catalog.py", "tasks/report.py", "workers/core/keys.py"]
    batch = {
        "skill": "analyze_code",
        "items": [{"path": path} for path in paths],
        "reduce": "report",
        "reduce_params": {"top": 2},
    }
    bad = client.post("/v1/batches", json={**batch, "reduce_params": {"top": 0}})
    assert bad.status_code == 422
    assert [p["field"] for p in bad.json()["error"]["fields"]] == ["reduce_params.top"]
    accepted = client.post("/v1/batches", json=batch).json()
    with client.stream("GET", accepted["links"]["events"]) as stream:
        end = read_events(stream)[-1]
    assert end[0] == "end" and end[2]["status"] == "succeeded", end
    result = end[2]["result"]
    assert isinstance(result, dict) and result, result
    assert client.get(accepted["links"]["self"]).json()["result"] == result
