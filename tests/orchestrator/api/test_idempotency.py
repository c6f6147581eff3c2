"""Idempotency-Key: same key and body give the same job; another body is refused; races too."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.orchestrator.api.conftest import noop_goal
from workers.celery_app.factory import create_app

pytestmark = [pytest.mark.redis]


@pytest.fixture
def api(redis_settings, live_api):
    return live_api(redis_settings())


def test_same_key_and_body_return_the_same_job(api) -> None:
    client = api.client(api.key())
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/jobs", json=noop_goal(3), headers=headers)
    second = client.post("/v1/jobs", json=noop_goal(3), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["job_id"] == second.json()["job_id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(client.get("/v1/jobs").json()["items"]) == 1


def test_same_key_with_another_body_is_422(api) -> None:
    client = api.client(api.key())
    headers = {"Idempotency-Key": "order-43"}
    assert client.post("/v1/jobs", json=noop_goal(3), headers=headers).status_code == 202
    refused = client.post("/v1/jobs", json=noop_goal(4), headers=headers)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "idempotency_mismatch"
    assert "different body" in refused.json()["error"]["message"]


def test_keys_are_scoped_per_tenant(api) -> None:
    headers = {"Idempotency-Key": "shared-name"}
    first = api.client(api.key(tenant="acme")).post("/v1/jobs", json=noop_goal(1), headers=headers)
    second = api.client(api.key(tenant="globex")).post(
        "/v1/jobs", json=noop_goal(1), headers=headers
    )
    assert first.json()["job_id"] != second.json()["job_id"]


def test_idempotency_key_is_stored_hashed_with_a_ttl(api, redis_url, key_prefix) -> None:
    import redis

    api.client(api.key()).post("/v1/jobs", json=noop_goal(1), headers={"Idempotency-Key": "k-1"})
    store = redis.Redis.from_url(redis_url)
    keys = [key.decode() for key in store.scan_iter(match=f"{key_prefix}:idem:*")]
    assert len(keys) == 1 and "k-1" not in keys[0]
    assert 0 < store.ttl(keys[0]) <= api.settings.api_idempotency_ttl_s
    store.close()


def test_concurrent_posts_with_repeated_keys_make_one_job_per_key(api) -> None:
    """A16 at reduced size: 100 POSTs over 20 distinct keys from 10 threads -> 20 jobs."""
    key = api.key()

    def post(index: int) -> tuple[int, str]:
        client = api.client(key)
        headers = {"Idempotency-Key": f"key-{index % 20}"}
        response = client.post("/v1/jobs", json=noop_goal(1), headers=headers)
        while response.status_code == 409:  # the same key is being recorded right now
            response = client.post("/v1/jobs", json=noop_goal(1), headers=headers)
        return response.status_code, response.json()["job_id"]

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(post, range(100)))
    assert {status for status, _ in answers} == {202}
    by_key: dict[int, set[str]] = {}
    for index, (_, job_id) in enumerate(answers):
        by_key.setdefault(index % 20, set()).add(job_id)
    assert all(len(jobs) == 1 for jobs in by_key.values()), by_key
    ledger = create_app(api.settings).victor.ledger
    assert len(ledger.list_jobs("acme", 0, 1000)) == 20


def test_an_abandoned_reservation_frees_the_key(api, redis_url, key_prefix) -> None:
    """A key reserved by a request that never recorded its job is in flight (409), then free."""
    import hashlib
    import json
    import time

    import redis

    from orchestrator.api.jobs import IN_FLIGHT_S

    client = api.client(api.key())
    digest = hashlib.sha256(b"lost-1").hexdigest()
    store = redis.Redis.from_url(redis_url)
    key = f"{key_prefix}:idem:acme:{digest}"
    goal = noop_goal(1)
    from orchestrator.api.jobs import goal_hash, parse_goal_body

    body_hash = goal_hash(parse_goal_body(goal))
    reservation = {"body": body_hash, "job_id": "never-recorded", "at": time.time()}
    store.set(key, json.dumps(reservation))
    headers = {"Idempotency-Key": "lost-1"}
    in_flight = client.post("/v1/jobs", json=goal, headers=headers)
    assert in_flight.status_code == 409 and in_flight.headers["Retry-After"] == "1"
    store.set(key, json.dumps({**reservation, "at": time.time() - IN_FLIGHT_S - 1}))
    response = client.post("/v1/jobs", json=goal, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["job_id"] != "never-recorded"
    store.close()
