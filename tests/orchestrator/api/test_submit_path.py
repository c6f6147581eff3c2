"""The lock-free submit path: messages a Celery worker reads, ledger first, nothing half-done."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from orchestrator.api.models import JobAccepted
from orchestrator.core.wire import Route, task_message
from tests.orchestrator.api.conftest import noop_goal, wait_status
from workers.celery_app.factory import create_app
from workers.core.keys import Keys
from workers.core.names import BATCH_TASK, PUBLISHED_HEADER, TENANT_HEADER
from workers.core.settings import Settings

pytestmark = [pytest.mark.redis]

# Per message or per process: they differ between any two publishes, Celery's own included.
VARYING_HEADERS = {"origin", PUBLISHED_HEADER}
VARYING_PROPERTIES = {"delivery_tag", "reply_to"}


def decoded(raw: bytes) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def test_a_built_message_is_the_message_send_task_publishes(
    redis_settings: Callable[..., Settings], redis_url: str
) -> None:
    settings = redis_settings()
    keys = Keys(settings.key_prefix)
    app = create_app(settings)
    route = Route.default(keys)
    client = redis.Redis.from_url(redis_url)
    try:
        args = ("noop", [{"value": 1}, {"value": "x" * 700}])  # long enough for a cut repr
        app.send_task(
            BATCH_TASK,
            args=args,
            kwargs={"job_id": "j1"},
            task_id="j1.0",
            ignore_result=True,
            headers={TENANT_HEADER: "acme"},
        )
        theirs = decoded(client.rpop(route.list_key))  # type: ignore[arg-type]
        ours = decoded(
            task_message(route, BATCH_TASK, "j1.0", args, {"job_id": "j1"}, tenant="acme").encode()
        )
        assert ours["body"] == theirs["body"]
        assert set(ours["headers"]) == set(theirs["headers"])
        for name, value in theirs["headers"].items():
            if name not in VARYING_HEADERS:
                assert ours["headers"][name] == value, name
        assert set(ours["properties"]) == set(theirs["properties"])
        for name, value in theirs["properties"].items():
            if name not in VARYING_PROPERTIES:
                assert ours["properties"][name] == value, name
        assert {k: v for k, v in ours.items() if k not in ("body", "headers", "properties")} == {
            k: v for k, v in theirs.items() if k not in ("body", "headers", "properties")
        }
    finally:
        client.close()


@pytest.mark.integration
def test_a_worker_runs_a_job_the_api_queued_and_its_answer_fits_the_schema(
    redis_settings: Callable[..., Settings], worker_factory: Any, live_api: Any
) -> None:
    settings = redis_settings()
    live = live_api(settings)
    client = live.client(live.key())
    response = client.post("/v1/jobs", json=noop_goal(5))
    assert response.status_code == 202, response.text
    accepted = JobAccepted.model_validate(response.json())
    assert response.headers["Location"] == accepted.links.self
    assert accepted.total_tasks == 5
    worker_factory(settings, concurrency=2)  # the worker starts after the tasks were queued
    job = wait_status(client, accepted.job_id)
    assert job["status"] == "succeeded" and job["done_tasks"] == 5


def test_the_ledger_holds_the_job_before_any_worker_could_see_a_task(
    redis_settings: Callable[..., Settings], live_api: Any, redis_url: str
) -> None:
    settings = redis_settings()
    live = live_api(settings)
    store = redis.Redis.from_url(redis_url)
    keys = Keys(settings.key_prefix)
    queue = Route.default(keys).list_key
    response = live.client(live.key()).post("/v1/jobs", json=noop_goal(3))
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    # No worker: the queued messages name exactly the recorded tasks of the recorded job.
    record = {k.decode(): v.decode() for k, v in store.hgetall(keys.job(job_id)).items()}
    assert record["status"] == "running" and record["total_tasks"] == "3"
    tasks = {k.decode() for k in store.hkeys(keys.job_tasks(job_id))}
    queued = {json.loads(raw)["headers"]["id"] for raw in store.lrange(queue, 0, -1)}
    assert queued == tasks == {f"{job_id}.{index}" for index in range(3)}
    assert store.zscore(keys.jobs_in_flight("acme"), job_id) is not None
    store.close()


def test_a_refused_submission_records_and_queues_nothing(
    redis_settings: Callable[..., Settings], live_api: Any, redis_url: str
) -> None:
    settings = redis_settings(api_max_jobs_in_flight=1)
    live = live_api(settings)
    store = redis.Redis.from_url(redis_url)
    keys = Keys(settings.key_prefix)
    queue = Route.default(keys).list_key
    client = live.client(live.key())
    assert client.post("/v1/jobs", json=noop_goal(2)).status_code == 202
    before = (store.llen(queue), store.zcard(keys.jobs_index("acme")))
    refused = client.post("/v1/jobs", json=noop_goal(2))
    assert refused.status_code == 429, refused.text
    assert (store.llen(queue), store.zcard(keys.jobs_index("acme"))) == before == (2, 1)
    store.close()


def test_a_finished_job_frees_its_in_flight_place(
    redis_settings: Callable[..., Settings], live_api: Any, redis_url: str
) -> None:
    settings = redis_settings(api_max_jobs_in_flight=1)
    live = live_api(settings)
    store = redis.Redis.from_url(redis_url)
    keys = Keys(settings.key_prefix)
    client = live.client(live.key())
    first = client.post("/v1/jobs", json=noop_goal(1)).json()["job_id"]
    assert client.post("/v1/jobs", json=noop_goal(1)).status_code == 429
    store.hset(keys.job(first), "status", "succeeded")  # as the ledger marks a finished job
    second = client.post("/v1/jobs", json=noop_goal(1))
    assert second.status_code == 202, second.text
    members = {m.decode() for m in store.zrange(keys.jobs_in_flight("acme"), 0, -1)}
    assert members == {second.json()["job_id"]}  # the ended job was pruned, not just skipped
    store.close()


def test_a_bad_body_counts_against_the_rate(
    redis_settings: Callable[..., Settings], live_api: Any
) -> None:
    live = live_api(redis_settings(api_rate_limit=2))
    client = live.client(live.key())
    assert client.post("/v1/jobs", json={"steps": "nope"}).status_code == 422
    assert client.post("/v1/jobs", json=noop_goal(1)).status_code == 202
    limited = client.post("/v1/jobs", json=noop_goal(1))
    assert limited.status_code == 429, limited.text
    assert "api_rate_limit" in limited.text and limited.headers["Retry-After"]


def test_queued_items_past_the_tenants_limit_get_429_until_a_job_ends(
    redis_settings: Callable[..., Settings], live_api: Any, redis_url: str
) -> None:
    settings = redis_settings(api_max_items_in_flight=5)
    live = live_api(settings)
    store = redis.Redis.from_url(redis_url)
    keys = Keys(settings.key_prefix)
    client = live.client(live.key())
    first = client.post("/v1/jobs", json=noop_goal(4))  # no worker: it stays in flight
    assert first.status_code == 202, first.text
    refused = client.post("/v1/jobs", json=noop_goal(2))
    assert refused.status_code == 429, refused.text
    assert "api_max_items_in_flight" in refused.text and refused.headers["Retry-After"] == "5"
    assert client.post("/v1/jobs", json=noop_goal(1)).status_code == 202  # 4 + 1 fits
    store.hset(keys.job(first.json()["job_id"]), "status", "succeeded")
    assert client.post("/v1/jobs", json=noop_goal(2)).status_code == 202
    assert store.hget(keys.items_in_flight("acme"), "total") == b"3"  # 1 + 2; 4 forgotten
    store.close()


def test_a_job_larger_than_the_items_limit_runs_when_the_tenant_has_nothing_in_flight(
    redis_settings: Callable[..., Settings], live_api: Any
) -> None:
    live = live_api(redis_settings(api_max_items_in_flight=2))
    client = live.client(live.key())
    assert client.post("/v1/jobs", json=noop_goal(3)).status_code == 202
    assert client.post("/v1/jobs", json=noop_goal(1)).status_code == 429


def test_a_job_with_a_reduce_is_admitted_and_counted_like_any_other(
    redis_settings: Callable[..., Settings], live_api: Any, redis_url: str
) -> None:
    settings = redis_settings(api_max_jobs_in_flight=1)
    live = live_api(settings)
    store = redis.Redis.from_url(redis_url)
    keys = Keys(settings.key_prefix)
    client = live.client(live.key())
    goal = noop_goal(2, reduce={"skill": "report", "params": {}})
    accepted = client.post("/v1/jobs", json=goal)  # the chord path, through Celery's canvas
    assert accepted.status_code == 202, accepted.text
    assert store.hget(keys.items_in_flight("acme"), accepted.json()["job_id"]) == b"2"
    refused = client.post("/v1/jobs", json=goal)
    assert refused.status_code == 429 and "api_max_jobs_in_flight" in refused.text
    store.close()
