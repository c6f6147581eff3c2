"""select_tools: rank the installed skills for a goal text (through the tool_selection cache).

The cache's namespaces: ``query`` (rankings of a goal text alone), ``context`` (rankings of a
goal text with context) and ``rl`` (the per-skill weight table the ranking uses, keyed by the
installed skills). Each is switched by ``tool_selection_cache_query/context/rl``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import weakref
from typing import Any

from tasks.catalog import SelectToolsInput
from workers.skills.registry import SkillRegistry
from workers.skills.spec import SkillContext, SkillSpec

_WORD = re.compile(r"[a-z0-9_]+")
# Bump when the scoring changes: it is part of every tool_selection key.
RANKING_VERSION = "1"

Weights = dict[str, dict[str, float]]

_fingerprints: weakref.WeakKeyDictionary[SkillRegistry, str] = weakref.WeakKeyDictionary()


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def skill_weights(specs: list[SkillSpec]) -> Weights:
    """Per skill, the weight of each word: name 4, keyword 3, description 1."""
    table: Weights = {}
    for spec in specs:
        vocabulary: dict[str, float] = {}
        for word in _words(spec.description):
            vocabulary[word] = max(vocabulary.get(word, 0.0), 1.0)
        for word in spec.keywords:
            vocabulary[word] = 3.0
        for word in _words(spec.name.replace("_", " ")):
            vocabulary[word] = 4.0
        table[spec.name] = vocabulary
    return table


def score_skills(words: list[str], weights: Weights) -> list[list[Any]]:
    """``[[name, score], ...]`` best first for the words of a goal, skills scoring above 0."""
    if not words:
        return []
    scored: list[list[Any]] = []
    norm = math.sqrt(len(words))
    for name, vocabulary in weights.items():
        score = sum(vocabulary.get(word, 0.0) for word in words) / norm
        if score > 0:
            scored.append([name, round(score, 4)])
    scored.sort(key=lambda pair: (-pair[1], pair[0]))
    return scored


def rank_skills(query: str, specs: list[SkillSpec], context_text: str = "") -> list[list[Any]]:
    """Score each skill by weighted word overlap with its name, keywords and description."""
    return score_skills(_words(query) + _words(context_text), skill_weights(specs))


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
        return score_skills(_words(query) + _words(context_text), weights)[:limit]

    return {"tools": cache.get_or_compute(key, rank, namespace=namespace)}
