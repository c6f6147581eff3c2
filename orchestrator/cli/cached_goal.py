"""Serve a goal from the cache file alone, without starting a worker: ``victor analyze`` run twice.

Every item's result is looked up first (the same keys the workers use: input, settings and the
file's content hash); only when every one is a hit is the reduce run here, in this process, on
them. One miss (a changed, new or unreadable file) and the caller runs the goal as usual, so a
changed file is always analyzed again. Celery, the ledger and the skills' parsers are never
imported on this path.
"""

from __future__ import annotations

from typing import Any

from orchestrator.core.plan import GoalSpec
from orchestrator.core.planner import plan_goal
from workers.cache.hooks import CacheProvider, ResponseCacheHook
from workers.cache.keying import tenant_scope
from workers.cache.lru import MISSING
from workers.core.errors import VictorError
from workers.core.settings import Settings
from workers.skills.executor import SkillExecutor
from workers.skills.registry import load_registry


def serve_from_cache(goal: GoalSpec, settings: Settings) -> dict[str, Any] | None:
    """The finished job as ``run_goal_cli`` shapes it, or None when any item must be computed.

    Only goals whose every step runs a cacheable skill qualify; the reduce (if any) runs here.
    """
    registry = load_registry()
    try:
        plan = plan_goal(goal, settings, registry)
    except VictorError:
        return None  # the usual path reports the problem with its own wording
    if not all(registry.get(step.skill).cacheable for step in plan.steps):
        return None
    provider = CacheProvider(settings)  # the manager stays for the usual path if it must run
    if not provider().response.enabled():
        return None
    hook = ResponseCacheHook(provider)
    executor = SkillExecutor(settings, registry)
    outcomes: list[dict[str, Any]] = []
    with tenant_scope(settings.tenant):  # the tenant the dispatcher gives the job's tasks
        for step in plan.steps:
            for item in step.items:
                spec, model = executor.validate(step.skill, item)
                value = hook.lookup(spec, model)
                if value is MISSING:
                    return None
                outcomes.append({"ok": True, "value": value})
    result = None
    if plan.reduce is not None:
        result = executor.run(plan.reduce.skill, {**plan.reduce.params, "results": [outcomes]})
    return {
        "job_id": None,
        "name": plan.name,
        "status": "succeeded",
        "items": len(outcomes),
        "failed_items": 0,
        "served_from_cache": True,
        "result": result,
    }
