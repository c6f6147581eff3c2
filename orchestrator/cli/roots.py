"""On a fleet, a plan's paths are checked against the roots the live workers serve.

A client never widens a worker's allowed roots: a path the workers do not serve is refused
before anything is dispatched, with the setting to change on the workers.
"""

from __future__ import annotations

import os

from orchestrator.core.plan import Plan
from workers.core.errors import AccessDeniedError
from workers.core.keys import Keys
from workers.core.redis_client import redis_client
from workers.core.settings import Settings
from workers.maintenance.presence import live_workers


def unserved_paths(plan: Plan, served: dict[str, list[str]]) -> dict[str, list[str]]:
    """Worker hostname -> the plan's paths outside that worker's roots (first few each)."""
    missing: dict[str, list[str]] = {}
    for hostname, roots in served.items():
        prefixes = [root.rstrip(os.sep) + os.sep for root in roots]
        for step in plan.steps:
            for item in step.items:
                path = item.get("path")
                if not isinstance(path, str):
                    continue
                real = os.path.realpath(path)
                if real in roots or any(real.startswith(prefix) for prefix in prefixes):
                    continue
                shown = missing.setdefault(hostname, [])
                if len(shown) < 3:
                    shown.append(path)
    return missing


def check_served_roots(plan: Plan, settings: Settings) -> None:
    """Refuse a plan whose paths some live worker does not serve (AccessDeniedError)."""
    client = redis_client(settings.state_url)
    served = {
        worker.hostname: list(worker.roots)
        for worker in live_workers(client, Keys(settings.key_prefix))
    }
    missing = unserved_paths(plan, served)
    if not missing:
        return
    hostname, paths = next(iter(sorted(missing.items())))
    raise AccessDeniedError(
        f"worker {hostname} does not serve {paths[0]!r} (its roots: "
        f"{', '.join(served[hostname]) or 'none'}; {len(missing)} of {len(served)} live workers "
        "affected); set VICTOR_ALLOWED_ROOTS on the workers to include it and restart them, or "
        "analyze a path inside their roots"
    )
