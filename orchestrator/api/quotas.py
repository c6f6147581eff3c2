"""What one tenant may submit: no test probes unless enabled, bounded items and jobs in flight."""

from __future__ import annotations

from orchestrator.core.plan import Plan
from workers.core.errors import GoalInputError, RateLimitError, ScopeError
from workers.core.settings import Settings
from workers.ledger import Ledger

# Skills that exist to test the fleet (memory, side effects, time): never a tenant's work.
PROBE_SKILLS = frozenset({"leak", "effect", "sleep"})
IN_FLIGHT = frozenset({"accepted", "running"})
IN_FLIGHT_RETRY_AFTER_S = 5


def check_quota(settings: Settings, ledger: Ledger, tenant: str, plan: Plan) -> None:
    """Raise before anything is recorded when ``plan`` is past what ``tenant`` may submit.

    Raises:
        ScopeError: a probe skill while ``api_probe_skills_enabled`` is off (403).
        GoalInputError: more items than ``api_max_items_per_job`` (422; waiting never helps).
        RateLimitError: ``api_max_jobs_in_flight`` jobs of the tenant still running (429).
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
    # Only the tenant's newest jobs are read (one lookup each): when all of them are still in
    # flight the limit is reached; jobs older than those have mostly ended.
    most = settings.api_max_jobs_in_flight
    running = sum(1 for job in ledger.list_jobs(tenant, 0, most) if job.status in IN_FLIGHT)
    if running >= most:
        raise RateLimitError(
            f"tenant {tenant!r} has {running} jobs in flight, the most it may have "
            "(api_max_jobs_in_flight); wait for one to finish",
            retry_after_s=IN_FLIGHT_RETRY_AFTER_S,
        )
