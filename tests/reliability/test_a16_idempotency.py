"""A16: concurrent POSTs repeating a few Idempotency-Keys make exactly one job per key.

Every key is sent several times at once by different clients (same body each time). A request
that meets its key still in flight answers 409 with Retry-After and the client retries, as a
real client does; in the end every POST has a 202 and the ledger holds one job per key, each
run once.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator.harness.audit import audit
from tests.reliability.api_support import (
    API_OVERRIDES,
    Answer,
    effect_goal,
    ledger_jobs,
    post,
    wait_jobs,
)
from tests.reliability.conftest import size

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def _a16(scenario_factory, worker_factory, live_api, posts: int, keys: int, name: str) -> None:
    scenario = scenario_factory(**API_OVERRIDES)
    worker_factory(scenario.settings, concurrency=2)
    api = live_api(scenario.settings)
    token = api.key(tenant="a16")
    local = threading.local()
    order = [index % keys for index in range(posts)]
    random.Random(16).shuffle(order)
    conflicts = 0
    lock = threading.Lock()

    def one(index: int) -> tuple[int, Answer]:
        nonlocal conflicts
        if not hasattr(local, "client"):
            local.client = api.client(token, timeout=10)
        headers = {"Idempotency-Key": f"a16-key-{index}"}
        goal = effect_goal([f"a16-{index}"], ms=20)
        deadline = time.monotonic() + 30
        while True:
            answer = post(local.client, goal, headers=headers)
            if answer.status != 409 or time.monotonic() > deadline:
                return index, answer
            with lock:
                conflicts += 1
            time.sleep(0.05)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(one, order))
    statuses = sorted({answer.status for _, answer in answers})
    assert statuses == [202], statuses
    by_key: dict[int, set[str]] = {}
    for index, answer in answers:
        assert answer.job_id is not None
        by_key.setdefault(index, set()).add(answer.job_id)
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    job_ids = {job_id for ids in by_key.values() for job_id in ids}
    assert len(job_ids) == keys
    assert ledger_jobs(scenario.settings, "a16") == job_ids
    statuses_after = wait_jobs(scenario.ledger, job_ids, timeout_s=120)
    assert set(statuses_after.values()) == {"succeeded"}
    replayed = posts - keys
    result = audit(
        name,
        scenario.oracle,
        [f"a16-{index}" for index in range(keys)],
        extra={
            "posts": posts,
            "keys": keys,
            "jobs": len(job_ids),
            "replayed": replayed,
            "in_flight_409_retries": conflicts,
        },
    )
    result.check(max_dup_exec=0)


def test_a16_repeated_idempotency_keys_make_one_job_each(
    scenario_factory, worker_factory, live_api
) -> None:
    _a16(scenario_factory, worker_factory, live_api, size(200, 1000), size(40, 200), "A16")


@pytest.mark.soak
def test_a16_full_size(scenario_factory, worker_factory, live_api) -> None:
    posts = size(1000, 1000, "VICTOR_SOAK_A16_POSTS")
    _a16(scenario_factory, worker_factory, live_api, posts, max(1, posts // 5), "A16-full")
