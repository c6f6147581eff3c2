"""What one tenant may submit: no test probes unless enabled, bounded items and jobs in flight.

Jobs in flight are counted in a per-tenant sorted set (``Keys.jobs_in_flight``) that a
submission adds to; a job is not removed when it ends but when the count reaches the limit
and the set is pruned of jobs the ledger shows as ended (or expired). One ``ZCARD`` per
submission, and a pipeline of status reads only when the limit is near.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import redis

from orchestrator.api.keystore import Principal
from orchestrator.core.plan import Plan
from workers.core.errors import GoalInputError, RateLimitError, ScopeError
from workers.core.keys import Keys
from workers.core.redis_client import translated
from workers.core.settings import Settings
from workers.ledger import TERMINAL

# Skills that exist to test the fleet (memory, side effects, time): never a tenant's work.
PROBE_SKILLS = frozenset({"leak", "effect", "sleep"})
IN_FLIGHT_RETRY_AFTER_S = 5


def check_plan(settings: Settings, plan: Plan) -> None:
    """Raise before anything is recorded when ``plan`` is past what any tenant may submit.

    Raises:
        ScopeError: a probe skill while ``api_probe_skills_enabled`` is off (403).
        GoalInputError: more items than ``api_max_items_per_job`` (422; waiting never helps).
    """
    skills = {step.skill for step in plan.steps}
    if plan.reduce is not None:
        skills.add(plan.reduce.skill)
    probes = sorted(skills & PROBE_SKILLS)
    if probes and not settings.api_probe_skills_enabled:
        raise ScopeError(
            f"skill {probes[0]!r} is a test probe, off for the API; the fleet's operator enables "
            "probes with VICTOR_API_PROBE_SKILLS_ENABLED=true"
        )
    limit = settings.api_max_items_per_job
    if plan.item_count > limit:
        raise GoalInputError(
            f"the goal has {plan.item_count} items, more than {limit} per job "
            "(api_max_items_per_job); split it into smaller jobs",
            problems=[
                {
                    "loc": ("steps",),
                    "msg": f"{plan.item_count} items, more than {limit} (api_max_items_per_job)",
                    "type": "too_many_items",
                }
            ],
        )


def rate_limited(settings: Settings, principal: Principal, now: float) -> RateLimitError:
    """The 429 for a key past ``api_rate_limit`` requests in the window holding ``now``."""
    window = int(now // settings.api_rate_window_s)
    retry_after = max(1, math.ceil((window + 1) * settings.api_rate_window_s - now))
    return RateLimitError(
        f"key {principal.key_id} is past {settings.api_rate_limit} requests per "
        f"{settings.api_rate_window_s} s (api_rate_limit); retry after {retry_after} s",
        retry_after_s=retry_after,
    )


def too_many_in_flight(tenant: str, running: int) -> RateLimitError:
    """The 429 for a tenant with ``running`` jobs in flight (``api_max_jobs_in_flight``)."""
    return RateLimitError(
        f"tenant {tenant!r} has {running} jobs in flight, the most it may have "
        "(api_max_jobs_in_flight); wait for one to finish",
        retry_after_s=IN_FLIGHT_RETRY_AFTER_S,
    )


def ended(members: Sequence[bytes], statuses: Sequence[bytes | None]) -> list[bytes]:
    """The members of an in-flight set whose job ended or whose record is gone."""
    return [
        member
        for member, status in zip(members, statuses, strict=True)
        if status is None or status.decode() in TERMINAL
    ]


def prune_in_flight(client: redis.Redis, keys: Keys, tenant: str) -> int:
    """Drop ended jobs from the tenant's in-flight set; return how many are left."""
    key = keys.jobs_in_flight(tenant)
    with translated("counting a tenant's jobs in flight"):
        members: list[bytes] = client.zrange(key, 0, -1)  # type: ignore[assignment]
        pipe = client.pipeline(transaction=False)
        for member in members:
            pipe.hget(keys.job(member.decode()), "status")
        gone = ended(members, pipe.execute())
        if gone:
            client.zrem(key, *gone)
    return len(members) - len(gone)


def check_in_flight(client: redis.Redis, keys: Keys, settings: Settings, tenant: str) -> None:
    """429 when the tenant already has ``api_max_jobs_in_flight`` jobs in flight."""
    most = settings.api_max_jobs_in_flight
    with translated("counting a tenant's jobs in flight"):
        running = int(client.zcard(keys.jobs_in_flight(tenant)))
    if running >= most:
        running = prune_in_flight(client, keys, tenant)
        if running >= most:
            raise too_many_in_flight(tenant, running)


def add_in_flight(
    client: redis.Redis, keys: Keys, tenant: str, job_id: str, now: float, ttl_s: int
) -> None:
    key = keys.jobs_in_flight(tenant)
    with translated("recording a job in flight"):
        pipe = client.pipeline(transaction=False)
        pipe.zadd(key, {job_id: now})
        pipe.expire(key, ttl_s)
        pipe.execute()
