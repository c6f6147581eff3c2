"""B1: a flood of submissions, 10% malformed: the right 4xx each, 202 for the rest, zero 5xx,
and nothing malformed reaches Redis (the ledger and the broker queue hold the valid ones only).

No worker runs, so the broker queue still holds exactly what was published when we count it.
"""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from orchestrator.harness.audit import AuditResult
from tests.reliability.api_support import API_OVERRIDES, Answer, ledger_jobs, post, status_counts
from tests.reliability.conftest import size
from workers.core.keys import Keys

pytestmark = [pytest.mark.redis]

MAX_BODY = 64 * 1024
FAN_OUT = 20
JSON = {"Content-Type": "application/json"}


def _nested(depth: int) -> bytes:
    value = b"[" * depth + b"]" * depth
    return b'{"steps": [{"skill": "noop", "items": [{"value": ' + value + b"}]}]}"


def _noop(value: Any = 1, count: int = 1) -> bytes:
    items = [{"value": value} for _ in range(count)]
    return json.dumps({"steps": [{"skill": "noop", "items": items}], "chunk_size": 1}).encode()


# name -> (body, headers, expected status). Every malformed kind of RELIABILITY.md, and more
# (a malformed Content-Length header is C7's: an HTTP client refuses to send one).
MALFORMED: dict[str, tuple[bytes, dict[str, str], int]] = {
    "bad_json": (b'{"steps": [', JSON, 400),
    "trailing_garbage": (b'{"steps": []} x', JSON, 400),
    "empty_body": (b"", JSON, 400),
    "invalid_utf8": (b'{"steps": "\xff\xfe"}', JSON, 400),
    "nan": (b'{"steps": [{"skill": "noop", "items": [{"value": NaN}]}]}', JSON, 400),
    "infinity": (b'{"steps": [{"skill": "noop", "items": [{"value": -Infinity}]}]}', JSON, 400),
    "deep_nesting": (b"[" * 5000 + b"]" * 5000, JSON, 400),
    "deep_nesting_in_a_value": (_nested(3000), JSON, 400),
    "nesting_under_the_parser_limit": (_nested(900), JSON, 400),
    "wrong_type_chunk_size": (b'{"steps": [{"skill": "noop"}], "chunk_size": "ten"}', JSON, 422),
    "wrong_type_steps": (b'{"steps": {"skill": "noop"}}', JSON, 422),
    "wrong_type_item": (b'{"steps": [{"skill": "sleep", "items": [{"ms": "long"}]}]}', JSON, 422),
    "not_an_object": (b"[1, 2, 3]", JSON, 422),
    "null_body": (b"null", JSON, 422),
    "huge_skill_name": (json.dumps({"steps": [{"skill": "x" * 50_000}]}).encode(), JSON, 422),
    "huge_item_string": (
        json.dumps({"steps": [{"skill": "effect", "items": [{"key": "k" * 40_000}]}]}).encode(),
        JSON,
        422,
    ),
    "unknown_field": (b'{"steps": [{"skill": "noop"}], "colour": "red"}', JSON, 422),
    "unknown_skill": (b'{"steps": [{"skill": "anlyze"}]}', JSON, 422),
    "fan_out_over_cap": (_noop(count=FAN_OUT + 1), JSON, 422),
    "wrong_content_type": (_noop(), {"Content-Type": "text/plain"}, 415),
    "form_content_type": (b"steps=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    "no_content_type": (_noop(), {}, 415),
    "oversized_body": (_noop("x" * (MAX_BODY + 10)), JSON, 413),
}


def _b1(scenario_factory, live_api, total: int, name: str) -> None:
    settings = scenario_factory(
        **API_OVERRIDES, api_max_body_bytes=MAX_BODY, max_fan_out=FAN_OUT
    ).settings
    api = live_api(settings)
    token = api.key(tenant="b1")
    kinds = list(MALFORMED)
    malformed = max(len(kinds), total // 10)
    plan: list[str | None] = [kinds[index % len(kinds)] for index in range(malformed)]
    plan += [None] * (total - malformed)
    random.Random(1).shuffle(plan)
    local = threading.local()

    def one(kind: str | None) -> tuple[str | None, Answer]:
        if not hasattr(local, "client"):
            local.client = api.client(token, timeout=30)
        if kind is None:
            return None, post(local.client, content=_noop(random.random()), headers=JSON)
        body, headers, _ = MALFORMED[kind]
        return kind, post(local.client, content=body, headers=headers)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, plan))
    wrong = [
        (kind, answer.status, answer.body)
        for kind, answer in answers
        if answer.status != (202 if kind is None else MALFORMED[kind][2])
    ]
    server_errors = [answer for _, answer in answers if answer.status >= 500 or answer.status == 0]
    valid = [answer for kind, answer in answers if kind is None and answer.status == 202]
    for kind, answer in answers:
        if kind is not None and answer.body is not None:
            assert answer.body["error"]["message"], (kind, answer.body)
    store = redis.Redis.from_url(settings.redis_url or "")
    keys = Keys(settings.key_prefix)
    queued = int(store.llen(keys.broker_queue("victor")))
    store.close()
    recorded = ledger_jobs(settings, "b1")
    figures = AuditResult(
        scenario=name,
        accepted=len(valid),
        completed=len(recorded),
        lost=len({answer.job_id for answer in valid} - recorded),
        unexpected=len(recorded - {answer.job_id for answer in valid}),
        dup_exec=0,
        dup_effect=0,
        recovery_s=None,
        executions=0,
        extra={
            "submissions": total,
            "malformed": malformed,
            "kinds": len(kinds),
            "statuses": status_counts(answer for _, answer in answers),
            "server_errors": len(server_errors),
            "wrong_status": len(wrong),
            "queued_messages": queued,
        },
    )
    figures.write()
    assert not wrong, wrong[:5]
    assert not server_errors
    assert len(valid) == total - malformed
    # Malformed never reach Redis: one ledger job and one queued message per valid submission.
    assert recorded == {answer.job_id for answer in valid}
    assert queued == len(valid)
    figures.check()


def test_b1_malformed_submissions_get_4xx_and_never_reach_redis(scenario_factory, live_api) -> None:
    _b1(scenario_factory, live_api, size(500, 10_000), "B1")


@pytest.mark.soak
def test_b1_full_size(scenario_factory, live_api) -> None:
    _b1(scenario_factory, live_api, size(10_000, 10_000, "VICTOR_SOAK_B1_SUBMISSIONS"), "B1-full")
