"""The submit path: one Lua call counts the rate, checks the Idempotency-Key and the tenant's
jobs in flight, records the job in the ledger and publishes its tasks.

No lock and no thread: handlers await ``redis.asyncio``; each submission is one round trip
(two when the key is stored in Redis rather than in the keys file). The ledger record and the
publish run in one script, so a worker never sees a task before its job is recorded, and a
failed script publishes nothing. Celery's canvas (and its result consumer) is used only for
jobs that need a join: a reduce (a chord) or sequential steps (a chain); those take the
threaded path in ``orchestrator.api.jobs``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import redis.asyncio as aioredis
from fastapi.exceptions import RequestValidationError
from redis.commands.core import AsyncScript
from starlette.concurrency import run_in_threadpool

from orchestrator.api import jobs
from orchestrator.api.keystore import Principal
from orchestrator.api.quotas import (
    FORGET_SCRIPT,
    IN_FLIGHT_LUA,
    check_plan,
    ended,
    rate_limited,
    refusal,
)
from orchestrator.api.services import Services
from orchestrator.core.dispatcher import job_record, new_job_id
from orchestrator.core.plan import GoalSpec, Plan
from orchestrator.core.planner import plan_goal
from orchestrator.core.wire import Route, task_message
from workers.core.errors import GoalInputError, RateLimitError
from workers.core.names import BATCH_TASK
from workers.core.redis_client import translated
from workers.ledger.redis_ledger import job_fields

# KEYS: 1 rate counter, 2 Idempotency-Key (a dummy name without one), 3 tenant's jobs in
#       flight, 4 their items, 5 job, 6 job's tasks, 7 ledger's open tasks, 8 tenant's job
#       index, 9 queue
# ARGV: 1 rate limit, 2 rate window ttl, 3 Idempotency-Key value ('' for none), 4 its ttl,
#       5 jobs in flight limit, 6 items in flight limit, 7 now, 8 record ttl, 9 job id,
#       10 the job's items, 11 payload (job fields, task specs, open members, messages: flat
#       lists), 12 '1' to count the rate
SUBMIT_SCRIPT = (
    IN_FLIGHT_LUA
    + """
local count = 0
if ARGV[12] == '1' then
  count = redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  if count > tonumber(ARGV[1]) then return {'rate', count} end
end
if ARGV[3] ~= '' then
  local stored = redis.call('GET', KEYS[2])
  if stored then return {'replay', stored} end
end
local now, ttl, items = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[10])
local verdict = admit(KEYS[3], KEYS[4], now, ttl, tonumber(ARGV[5]), tonumber(ARGV[6]), items)
if verdict then return verdict end
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4]) end
local payload = cjson.decode(ARGV[11])
local function each(command, key, values)
  for first = 1, #values, 1000 do
    redis.call(command, key, unpack(values, first, math.min(first + 999, #values)))
  end
end
-- The ledger first: the job, its tasks, the open tasks the reconciler watches, the indexes.
each('HSET', KEYS[5], payload.job)
redis.call('EXPIRE', KEYS[5], ttl)
each('HSET', KEYS[6], payload.tasks)
redis.call('EXPIRE', KEYS[6], ttl)
each('ZADD', KEYS[7], payload.open)
redis.call('ZADD', KEYS[8], now, ARGV[9])
redis.call('EXPIRE', KEYS[8], ttl)
enter(KEYS[3], KEYS[4], now, ttl, ARGV[9], items)
-- Then the tasks, as kombu's Redis transport queues them.
each('LPUSH', KEYS[9], payload.messages)
return {'ok', count}
"""
)


def needs_canvas(plan: Plan) -> bool:
    """A reduce or sequential steps need Celery's joins (chord, chain): the threaded path."""
    return plan.reduce is not None or (plan.strategy == "sequential" and len(plan.steps) > 1)


class Submitter:
    """Submits jobs from the API's event loop; one per API app (so per uvicorn process)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.keys = services.keys
        self.route = Route.default(services.keys)
        # Per event loop (a test may run the app on several loops in turn): client and script.
        self._held: dict[int, tuple[asyncio.AbstractEventLoop, aioredis.Redis, AsyncScript]] = {}

    def _loop_held(self) -> tuple[asyncio.AbstractEventLoop, aioredis.Redis, AsyncScript]:
        loop = asyncio.get_running_loop()
        held = self._held.get(id(loop))
        if held is None or held[0] is not loop:
            client = aioredis.Redis.from_url(
                self.services.redis_url,
                socket_timeout=2.0,
                socket_connect_timeout=2.0,
                health_check_interval=30,
            )
            held = self._held[id(loop)] = (loop, client, client.register_script(SUBMIT_SCRIPT))
        return held

    def client(self) -> aioredis.Redis:
        """This event loop's Redis client."""
        return self._loop_held()[1]

    async def submit(
        self, principal: Principal, goal: GoalSpec, idempotency_key: str | None
    ) -> tuple[dict[str, Any], bool]:
        """Plan, record and publish; return ``(accepted view, replayed)``."""
        services = self.services
        try:
            if any(step.paths for step in goal.steps):  # walks directories: not on the loop
                plan = await run_in_threadpool(
                    plan_goal, goal, services.settings, services.registry
                )
            else:
                plan = plan_goal(goal, services.settings, services.registry)
            check_plan(services.settings, plan)
        except GoalInputError as exc:  # name the fields, as for the body's own schema
            await self.count_rate(principal)
            raise RequestValidationError(
                [{**problem, "loc": ("body", *problem["loc"])} for problem in exc.problems]
            ) from exc
        except Exception:
            await self.count_rate(principal)
            raise
        if needs_canvas(plan):
            await self.count_rate(principal)
            return await run_in_threadpool(
                jobs.submit_plan, services, principal, goal, plan, idempotency_key
            )
        for attempt in (1, 2):
            outcome = await self._record_and_publish(
                principal, goal, plan, idempotency_key, count_rate=attempt == 1
            )
            if not isinstance(outcome, RateLimitError):
                return outcome
            if attempt == 1:  # past a limit: forget the jobs that ended, then try once more
                await self.prune(principal.tenant)
        assert isinstance(outcome, RateLimitError)
        raise outcome

    async def _record_and_publish(
        self,
        principal: Principal,
        goal: GoalSpec,
        plan: Plan,
        idempotency_key: str | None,
        *,
        count_rate: bool,
    ) -> tuple[dict[str, Any], bool] | RateLimitError:
        """One script call; the 429 to raise when the tenant is past an in-flight limit."""
        settings, keys, tenant = self.services.settings, self.keys, principal.tenant
        job_id = new_job_id()
        now = time.time()
        window = int(now // settings.api_rate_window_s)
        body_hash = jobs.goal_hash(goal) if idempotency_key is not None else ""
        idem_key = keys.idempotency(tenant, "-")
        idem_value = ""
        if idempotency_key is not None:
            digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
            idem_key = keys.idempotency(tenant, digest)
            idem_value = json.dumps({"body": body_hash, "job_id": job_id, "at": now})
        chunks = plan.chunks()
        task_ids = [f"{job_id}.{index}" for index in range(len(chunks))]
        # Recorded and published in one script: the job is running when anyone can read it.
        record = job_record(plan, job_id, tenant, "running", now, len(chunks))
        payload = {
            "job": _flat(job_fields(record).items()),
            "tasks": _flat(
                (task_id, json.dumps({"skill": skill, "items": items, "step": step}))
                for task_id, (step, skill, items) in zip(task_ids, chunks, strict=True)
            ),
            "open": _flat((repr(now), f"{job_id}|{task_id}") for task_id in task_ids),
            "messages": [
                task_message(
                    self.route,
                    BATCH_TASK,
                    task_id,
                    (skill, items),
                    {"job_id": job_id},
                    tenant=tenant,  # workers key their cache entries by it
                )
                for task_id, (_, skill, items) in zip(task_ids, chunks, strict=True)
            ],
        }
        script_keys = [
            keys.rate_limit(principal.key_id, window),
            idem_key,
            keys.jobs_in_flight(tenant),
            keys.items_in_flight(tenant),
            keys.job(job_id),
            keys.job_tasks(job_id),
            keys.ledger_open(),
            keys.jobs_index(tenant),
            self.route.list_key,
        ]
        args: list[str | int] = [
            settings.api_rate_limit,
            settings.api_rate_window_s + 1,
            idem_value,
            settings.api_idempotency_ttl_s,
            settings.api_max_jobs_in_flight,
            settings.api_max_items_in_flight,
            repr(now),
            settings.result_expires_s,
            job_id,
            plan.item_count,
            json.dumps(payload),
            "1" if count_rate else "0",
        ]
        with translated("recording and publishing a job"):
            reply = await self._loop_held()[2](keys=script_keys, args=args)
        verdict = reply[0].decode()
        if verdict == "ok":
            accepted = {
                "job_id": job_id,
                "status": "running",
                "total_tasks": len(task_ids),
                "links": jobs.links(job_id),
            }
            return accepted, False
        if verdict == "rate":
            raise rate_limited(settings, principal, now)
        if verdict == "replay":
            replay = await run_in_threadpool(
                jobs.replay_stored, self.services, reply[1], body_hash, idem_key
            )
            if replay is None:  # the key's job expired: the key is free again
                return await self._record_and_publish(
                    principal, goal, plan, idempotency_key, count_rate=False
                )
            return replay, True
        return refusal(verdict, int(reply[1]), tenant, plan.item_count, settings)

    async def prune(self, tenant: str) -> None:
        """Forget the tenant's jobs in flight that ended (or whose record is gone)."""
        client, key = self.client(), self.keys.jobs_in_flight(tenant)
        with translated("counting a tenant's jobs in flight"):
            members: list[bytes] = await client.zrange(key, 0, -1)  # type: ignore[assignment]
            pipe = client.pipeline(transaction=False)
            for member in members:
                pipe.hget(self.keys.job(member.decode()), "status")
            gone = ended(members, await pipe.execute())
            if gone:
                await client.eval(FORGET_SCRIPT, 2, key, self.keys.items_in_flight(tenant), *gone)

    async def count_rate(self, principal: Principal) -> None:
        """Count a request that ends before the script (a bad goal) against the key's rate."""
        settings = self.services.settings
        now = time.time()
        key = self.keys.rate_limit(principal.key_id, int(now // settings.api_rate_window_s))
        with translated("counting a request against the rate limit"):
            pipe = self.client().pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, settings.api_rate_window_s + 1)
            count, _ = await pipe.execute()
        if int(count) > settings.api_rate_limit:
            raise rate_limited(settings, principal, now)


def _flat(pairs: Any) -> list[str]:
    return [str(value) for pair in pairs for value in pair]
