"""What one tenant may submit: no test probes unless enabled, bounded items and jobs in flight.

Jobs in flight are counted in a per-tenant sorted set (``Keys.jobs_in_flight``) that a
submission adds to; a job is not removed when it ends but when the count reaches the limit
and the set is pruned of jobs the ledger shows as ended (or expired). One ``ZCARD`` per
submission, and a pipeline of status reads only when the limit is near.
"""

from __future__ import annotations

import math
import time
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


def too_much_work(tenant: str, queued: int, items: int, most: int) -> RateLimitError:
    """The 429 for a job whose items would take the tenant past ``api_max_items_in_flight``."""
    return RateLimitError(
        f"tenant {tenant!r} has {queued} items in flight; {items} more would pass "
        f"{most} (api_max_items_in_flight); wait for a job to finish",
        retry_after_s=IN_FLIGHT_RETRY_AFTER_S,
    )


# Lua shared by the submit script and ADMIT_SCRIPT. The in-flight zset holds job id -> submit
# time; the items hash holds job id -> items and their ``total``. Both change together.
IN_FLIGHT_LUA = """
local function forget(jobs_key, items_key, id)
  local n = redis.call('HGET', items_key, id)
  if n then
    redis.call('HINCRBY', items_key, 'total', -tonumber(n))
    redis.call('HDEL', items_key, id)
  end
  redis.call('ZREM', jobs_key, id)
end
local function admit(jobs_key, items_key, now, ttl, most_jobs, most_items, items)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', jobs_key, '-inf', now - ttl)) do
    forget(jobs_key, items_key, id)
  end
  local running = redis.call('ZCARD', jobs_key)
  if running >= most_jobs then return {'busy', running} end
  local queued = tonumber(redis.call('HGET', items_key, 'total') or '0')
  if running > 0 and queued + items > most_items then return {'work', queued} end
  return nil
end
local function enter(jobs_key, items_key, now, ttl, id, items)
  redis.call('ZADD', jobs_key, now, id)
  redis.call('EXPIRE', jobs_key, ttl)
  redis.call('HSET', items_key, id, items)
  redis.call('HINCRBY', items_key, 'total', items)
  redis.call('EXPIRE', items_key, ttl)
end
"""

# KEYS: jobs in flight, items in flight; ARGV: now, ttl, most jobs, most items, items, job id
ADMIT_SCRIPT = (
    IN_FLIGHT_LUA
    + """
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local verdict = admit(KEYS[1], KEYS[2], now, ttl, tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]))
if verdict then return verdict end
enter(KEYS[1], KEYS[2], now, ttl, ARGV[6], tonumber(ARGV[5]))
return {'ok', 0}
"""
)

# KEYS: jobs in flight, items in flight; ARGV: the job ids to forget. Returns jobs left.
FORGET_SCRIPT = (
    IN_FLIGHT_LUA
    + """
for _, id in ipairs(ARGV) do forget(KEYS[1], KEYS[2], id) end
return redis.call('ZCARD', KEYS[1])
"""
)


def refusal(
    verdict: str, value: int, tenant: str, items: int, settings: Settings
) -> RateLimitError:
    """The 429 for an admission script's ``busy`` or ``work`` verdict."""
    if verdict == "work":
        return too_much_work(tenant, value, items, settings.api_max_items_in_flight)
    return too_many_in_flight(tenant, value)


def ended(members: Sequence[bytes], statuses: Sequence[bytes | None]) -> list[bytes]:
    """The members of an in-flight set whose job ended or whose record is gone."""
    return [
        member
        for member, status in zip(members, statuses, strict=True)
        if status is None or status.decode() in TERMINAL
    ]


def prune_in_flight(client: redis.Redis, keys: Keys, tenant: str) -> None:
    """Forget the tenant's jobs in flight that ended (or whose record is gone)."""
    key = keys.jobs_in_flight(tenant)
    with translated("counting a tenant's jobs in flight"):
        members: list[bytes] = client.zrange(key, 0, -1)  # type: ignore[assignment]
        pipe = client.pipeline(transaction=False)
        for member in members:
            pipe.hget(keys.job(member.decode()), "status")
        gone = ended(members, pipe.execute())
        if gone:
            client.eval(FORGET_SCRIPT, 2, key, keys.items_in_flight(tenant), *gone)


def admit_in_flight(
    client: redis.Redis, keys: Keys, settings: Settings, tenant: str, job_id: str, items: int
) -> None:
    """Enter the job among the tenant's jobs in flight, or 429 past either limit.

    Past a limit, ended jobs are pruned and the job is tried once more.
    """
    script_keys = [keys.jobs_in_flight(tenant), keys.items_in_flight(tenant)]
    for attempt in (1, 2):
        args: list[str | int] = [
            repr(time.time()),
            settings.result_expires_s,
            settings.api_max_jobs_in_flight,
            settings.api_max_items_in_flight,
            items,
            job_id,
        ]
        with translated("counting a tenant's jobs in flight"):
            reply: list[bytes] = client.eval(ADMIT_SCRIPT, 2, *script_keys, *args)
        verdict, value = reply
        if verdict == b"ok":
            return
        if attempt == 1:
            prune_in_flight(client, keys, tenant)
    raise refusal(verdict.decode(), int(value), tenant, items, settings)
