"""Settings read by a composed name, and settings accepted for the guide's sake with no effect.

Every ``Settings`` field has a reader; a test greps the source for each name. A field read by
a composed name (``getattr(settings, f"{prefix}_timeout")``) is listed in ``COMPOSED_READERS``
with the module and the pattern that composes it. A field listed in ``NO_EFFECT`` is accepted
so the guide's code runs, does nothing here, and warns once per process when set to a value
other than its default.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

logger = logging.getLogger(__name__)

# field -> (module path, text in that module that composes the field's name)
COMPOSED_READERS: dict[str, tuple[str, str]] = {
    "lazy_load_planning": ("orchestrator/facade/orchestrator.py", 'f"lazy_load_{component}"'),
    "lazy_load_memory": ("orchestrator/facade/orchestrator.py", 'f"lazy_load_{component}"'),
    "tool_selection_cache_context": ("workers/cache/manager.py", 'f"tool_selection_cache_{'),
    "tool_selection_cache_rl": ("workers/cache/manager.py", 'f"tool_selection_cache_{'),
    "embedding_cache_enabled": ("workers/cache/manager.py", 'f"{name}_cache_{suffix}"'),
    "embedding_cache_ttl": ("workers/cache/manager.py", 'f"{name}_cache_{suffix}"'),
    **{
        f"{family}_{knob}": ("workers/providers/config.py", 'f"{prefix}_{knob}"')
        for family in ("openai", "anthropic", "local_provider")
        for knob in ("timeout", "max_retries", "concurrent_requests")
        if (family, knob) != ("local_provider", "concurrent_requests")
    },
    "local_provider_concurrent_requests": (
        "workers/providers/config.py",
        'f"{prefix}_concurrent_requests"',
    ),
}

# field -> why it has no effect here
NO_EFFECT: dict[str, str] = {
    "lazy_load_tool_executor": (
        "the code that runs a skill in a worker is always loaded at start (it is what the "
        "worker is for); skills themselves load lazily per lazy_load_skills"
    ),
    "use_memory_pools": (
        "Python manages its own memory; per-process limits are memory_limit_mb and pool-child "
        "recycling, not object pools"
    ),
    "memory_pool_size": "see use_memory_pools: no object pools exist to size",
}

_warned: set[str] = set()
_lock = threading.Lock()


def warn_no_effect(settings: Any) -> list[str]:
    """Warn once per process for each no-effect field set to a non-default value."""
    fields = type(settings).model_fields
    changed = [
        name
        for name in NO_EFFECT
        if name in fields and getattr(settings, name) != fields[name].default
    ]
    with _lock:
        fresh = [name for name in changed if name not in _warned]
        _warned.update(fresh)
    for name in fresh:
        logger.warning(
            "setting %s=%r has no effect in victor-fleet: %s",
            name,
            getattr(settings, name),
            NO_EFFECT[name],
        )
    return fresh
