"""Task, queue, header and entry-point names: stable strings that messages carry.

Celery tasks get explicit names so moving a module never orphans a queued message.
"""

from __future__ import annotations

SKILL_TASK_PREFIX = "victor.skill."
BATCH_TASK = "victor.batch"
REDUCE_TASK = "victor.reduce"
RECONCILE_TASK = "victor.reconcile"
CONSOLIDATE_TASK = "victor.memory.consolidate"
CLEAR_EPISODES_TASK = "victor.memory.clear_old_episodes"
MONITOR_TASK = "victor.monitor.check"
CACHE_EXPIRY_TASK = "victor.cache.clear_expired"

DEFAULT_QUEUE = "victor"

PUBLISHED_HEADER = "victor_published_at"  # publish time, for queue wait
TENANT_HEADER = "victor_tenant"  # the job's tenant, for cache keys

SKILLS_ENTRY_POINT_GROUP = "victor.skills"


def skill_task_name(skill: str) -> str:
    """The Celery task name of ``skill``."""
    return f"{SKILL_TASK_PREFIX}{skill}"
