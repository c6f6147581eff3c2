"""embed: hashed word and character n-gram vectors, L2-normalised (needs numpy)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np

from tasks.catalog import EmbedInput
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


def embed(params: EmbedInput, context: SkillContext) -> dict[str, Any]:
    """Return ``{"dimensions", "vectors"}``; each text goes through the embedding cache."""
    provider = context.services.get("cache")
    cache = provider().embedding if provider is not None else None
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
