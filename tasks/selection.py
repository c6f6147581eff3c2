"""select_tools: rank the installed skills for a goal text (through the tool_selection cache).

The cache's namespaces: ``query`` (rankings of a goal text alone), ``context`` (rankings of a
goal text with context) and ``rl`` (the per-skill weight table the ranking uses, keyed by the
installed skills). Each is switched by ``tool_selection_cache_query/context/rl``.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from typing import Any

from tasks.catalog import SelectToolsInput
from workers.skills.ranking import (
    RANKING_VERSION,
    rank_skills,
    score_skills,
    skill_weights,
    words_of,
)
from workers.skills.registry import SkillRegistry
from workers.skills.spec import SkillContext

_fingerprints: weakref.WeakKeyDictionary[SkillRegistry, str] = weakref.WeakKeyDictionary()


def registry_fingerprint(registry: SkillRegistry) -> str:
    """sha256 of what the ranking reads from the installed skills (memoized per registry)."""
    last = _last_fingerprint
    if last is not None and last[0]() is registry:
        return last[1]
    fingerprint = _fingerprints.get(registry)
    if fingerprint is None:
        described = [
            [spec.name, spec.version, spec.description, list(spec.keywords)]
            for spec in registry.specs()
        ]
        fingerprint = hashlib.sha256(json.dumps(described).encode()).hexdigest()
        _fingerprints[registry] = fingerprint
    _remember_fingerprint(registry, fingerprint)
    return fingerprint


_last_fingerprint: tuple[weakref.ReferenceType[SkillRegistry], str] | None = None


def _remember_fingerprint(registry: SkillRegistry, fingerprint: str) -> None:
    global _last_fingerprint
    _last_fingerprint = (weakref.ref(registry), fingerprint)


def select_tools(params: SelectToolsInput, context: SkillContext) -> dict[str, Any]:
    """Return ``{"tools": [[name, score], ...]}`` best first, at most ``max_tools``."""
    registry: SkillRegistry = context.services["registry"]
    limit = params.max_tools or context.settings.tool_selection_max_tools
    provider = context.services.get("cache")
    if provider is None:
        return {"tools": rank_skills(params.query, registry.specs(), params.context)[:limit]}
    cache = provider().tool_selection
    fingerprint = registry_fingerprint(registry)
    query, context_text = params.query, params.context
    namespace = "context" if context_text else "query"
    # An agent asks the same goals again and again: recent keys are memoized by the cache.
    key = cache.recent_key(
        namespace, RANKING_VERSION, (query, context_text, str(limit), fingerprint)
    )

    def rank() -> list[list[Any]]:
        weights_key = cache.key("rl", RANKING_VERSION, fingerprint)
        weights = cache.get_or_compute(
            weights_key, lambda: skill_weights(registry.specs()), namespace="rl"
        )
        return score_skills(words_of(query) + words_of(context_text), weights)[:limit]

    return {"tools": cache.get_or_compute(key, rank, namespace=namespace)}
