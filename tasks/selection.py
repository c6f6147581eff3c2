"""select_tools: rank the installed skills for a goal text (through the tool_selection cache).

BM25 over each skill's name, keywords and description (``workers.skills.bm25``); when the
configured provider has an embeddings endpoint, the cosine similarity of the goal's embedding
with each skill's adds to the score. At most ``max_tools`` (``tool_selection_max_tools``).

Each skill's score is then multiplied by its weight from observed outcomes: success rate and
latency as consolidated into semantic memory (``workers.skills.outcome_weights`` has the
formula; a skill without facts weighs 1.0, none weighs under 0.4).

The cache's namespaces: ``query`` (rankings of a goal text alone), ``context`` (rankings of a
goal text with context) and ``rl`` (the ranking's per-skill tables: the BM25 index, keyed by the
installed skills, and the outcome weights, read again from semantic memory when their entry
expires after ``tool_selection_cache_ttl``). Each is switched by
``tool_selection_cache_query/context/rl``. A ranking is computed with the weights of its time,
so a cached ranking follows new weights within one TTL.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from typing import Any

from tasks.catalog import SelectToolsInput
from workers.core.settings import Settings
from workers.maintenance.episodes import memories_for
from workers.skills.bm25 import (
    BM25_VERSION,
    Index,
    bm25_index,
    bm25_scores,
    cosine,
    ranked,
    terms_of,
)
from workers.skills.outcome_weights import WEIGHTS_VERSION, outcome_weights, weighted
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


# An embedding's share of the score, against BM25 scaled to the best match's 1.0.
EMBEDDING_WEIGHT = 0.5


def rank(
    query: str,
    context_text: str,
    index: Index,
    limit: int,
    similarity: dict[str, float] | None,
    weights: dict[str, float] | None = None,
) -> list[list[Any]]:
    """The ranking of one goal: BM25 (scaled to the best at 1.0), plus embedding similarity,
    times each skill's outcome weight."""
    scores = bm25_scores(terms_of(query) + terms_of(context_text), index)
    if similarity:
        best = max(scores.values(), default=0.0) or 1.0
        scores = {
            name: scores.get(name, 0.0) / best + EMBEDDING_WEIGHT * max(0.0, similarity[name])
            for name in similarity
            if scores.get(name) or similarity[name] > 0
        }
    return ranked(weighted(scores, weights or {}), limit)


def observed_weights(settings: Settings) -> dict[str, float]:
    """Each skill's weight from the success and latency facts in semantic memory."""
    _, semantic = memories_for(settings)
    return outcome_weights(semantic.facts())


def _similarity(
    query: str, registry: SkillRegistry, context: SkillContext
) -> dict[str, float] | None:
    """Cosine similarity of the goal with each skill, when the provider embeds; else None."""
    settings = context.settings
    if settings.provider in ("none", "anthropic") or "embed" not in registry.names():
        return None
    specs = registry.specs()
    texts = [query] + [f"{spec.name}: {spec.description}" for spec in specs]
    vectors = context.services["registry"].load("embed")(
        registry.get("embed").input_model(texts=texts), context
    )["vectors"]
    return {
        spec.name: cosine(vectors[0], vector)
        for spec, vector in zip(specs, vectors[1:], strict=True)
    }


def select_tools(params: SelectToolsInput, context: SkillContext) -> dict[str, Any]:
    """Return ``{"tools": [[name, score], ...]}`` best first, at most ``max_tools``."""
    registry: SkillRegistry = context.services["registry"]
    limit = params.max_tools or context.settings.tool_selection_max_tools
    query, context_text = params.query, params.context
    provider = context.services.get("cache")
    if provider is None:
        similarity = _similarity(query, registry, context)
        index = bm25_index(registry.specs())
        weights = observed_weights(context.settings)
        return {"tools": rank(query, context_text, index, limit, similarity, weights)}
    cache = provider().tool_selection
    fingerprint = registry_fingerprint(registry)
    namespace = "context" if context_text else "query"
    embedder = (context.settings.provider, context.settings.embedding_model, context.settings.model)
    # An agent asks the same goals again and again: recent keys are memoized by the cache.
    key = cache.recent_key(
        namespace,
        BM25_VERSION,
        (query, context_text, str(limit), fingerprint, json.dumps(embedder)),
    )

    def compute() -> list[list[Any]]:
        index_key = cache.key("rl", BM25_VERSION, fingerprint)
        index = cache.get_or_compute(
            index_key, lambda: bm25_index(registry.specs()), namespace="rl"
        )
        weights_key = cache.recent_key("rl", WEIGHTS_VERSION, ("outcome-weights",))
        weights = cache.get_or_compute(
            weights_key, lambda: observed_weights(context.settings), namespace="rl"
        )
        similarity = _similarity(query, registry, context)
        return rank(query, context_text, index, limit, similarity, dict(weights))

    return {"tools": cache.get_or_compute(key, compute, namespace=namespace)}
