"""embed: hashed word and character n-gram vectors, L2-normalised (needs numpy)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np

from tasks.catalog import EmbedInput
from workers.cache import MISSING
from workers.core.settings import Settings
from workers.skills.spec import SkillContext

_WORD = re.compile(r"\w+")
VERSION = "1"


def embed_text(text: str, dimensions: int) -> list[float]:
    """One text's vector: words and character trigrams hashed into ``dimensions`` signed buckets."""
    vector = np.zeros(dimensions, dtype=np.float64)
    lowered = text.lower()
    features = _WORD.findall(lowered)
    features += [lowered[index : index + 3] for index in range(max(0, len(lowered) - 2))]
    for feature in features:
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % dimensions
        vector[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = float(np.linalg.norm(vector))
    if norm:
        vector /= norm
    return [round(float(value), 6) for value in vector]


def provider_embeds(settings: Settings) -> bool:
    """Whether the configured provider has an embeddings endpoint (Anthropic has none)."""
    return settings.provider not in ("none", "anthropic")


def embed(params: EmbedInput, context: SkillContext) -> dict[str, Any]:
    """Return ``{"dimensions", "vectors"}``; each text goes through the embedding cache.

    With an OpenAI-compatible provider the vectors come from its embeddings endpoint (local
    servers get ``local_provider_batch_size`` texts a call); otherwise hashed n-grams.
    """
    provider = context.services.get("cache")
    cache = provider().embedding if provider is not None else None
    if provider_embeds(context.settings):
        vectors = _provider_vectors(params.texts, context.settings, cache)
        return {"dimensions": len(vectors[0]) if vectors else 0, "vectors": vectors}
    vectors = []
    for text in params.texts:
        if cache is None or not cache.enabled():
            vectors.append(embed_text(text, params.dimensions))
            continue
        key = cache.key("embed", VERSION, {"text": text, "dimensions": params.dimensions})
        vectors.append(
            cache.get_or_compute(key, lambda text=text: embed_text(text, params.dimensions))
        )
    return {"dimensions": params.dimensions, "vectors": vectors}


def _provider_vectors(texts: list[str], settings: Settings, cache: Any) -> list[list[float]]:
    """Provider embeddings, the cached ones looked up first and the rest fetched in batches."""
    from workers.providers import embed_texts, provider_config

    config = provider_config(settings, settings.embedding_model or None)
    batch_size = settings.local_provider_batch_size if config.family == "local" else None
    use_cache = cache is not None and cache.enabled()
    keys = [
        cache.key(
            "embed",
            VERSION,
            {
                "text": text,
                "provider": config.name,
                "base_url": config.base_url,
                "model": settings.embedding_model or settings.model,
            },
        )
        if use_cache
        else ""
        for text in texts
    ]
    found: list[Any] = [cache.get(key) if use_cache else MISSING for key in keys]
    missing = [index for index, value in enumerate(found) if value is MISSING]
    if missing:
        fresh = embed_texts(settings, [texts[index] for index in missing], batch_size)
        for index, vector in zip(missing, fresh, strict=True):
            found[index] = vector
            if use_cache:
                cache.set(keys[index], vector)
    return [list(vector) for vector in found]
