"""How many items a batch chunk carries when the command does not say (``--chunk-size``).

A chunk is one Celery message and one task: larger chunks spread the per-message cost (publish,
fetch, ack, result) over more items, which is what cheap skills need, while a slow skill wants
small chunks so that work spreads over the fleet, progress moves and a lost chunk redoes
little. The size is chosen once, when the run starts, and kept in its record (a resumed run
keeps it): ``batch_chunk_target_ms`` divided by the skill's observed time per item, at least
``chunk_size`` and at most ``MAX_AUTO_CHUNK``; with a known item count, no larger than keeps
every in-flight slot busy twice over (so short runs still spread). With no observed time the
skill gets ``chunk_size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis import RedisError

from workers.core.errors import VictorError
from workers.core.settings import Settings

MAX_AUTO_CHUNK = 1000


@dataclass(frozen=True)
class ChunkChoice:
    size: int
    reason: str


def explicit_chunk_size(settings: Settings) -> int | None:
    """``chunk_size`` when it was set (environment, profile, constructor); else None: the run
    sizes its chunks from the skill's observed time per item."""
    return settings.chunk_size if "chunk_size" in settings.model_fields_set else None


def choose_chunk_size(
    settings: Settings, skill: str, items: int | None, window: int
) -> ChunkChoice:
    """The chunk size of a new run of ``skill`` over ``items`` with ``window`` chunks in flight."""
    floor = settings.chunk_size
    if settings.batch_chunk_target_ms <= 0:
        return ChunkChoice(floor, "chunk_size (batch_chunk_target_ms is 0)")
    from workers.telemetry.fleet import skill_item_ms

    try:
        per_item_ms = skill_item_ms(settings, skill)
    except (RedisError, VictorError):  # advice only: no answer from the store, no figure
        per_item_ms = None
    if per_item_ms is None:
        return ChunkChoice(floor, f"chunk_size: no recent figures for {skill}")
    size = MAX_AUTO_CHUNK
    if per_item_ms > 0:
        size = min(MAX_AUTO_CHUNK, int(settings.batch_chunk_target_ms / per_item_ms))
    reason = f"{per_item_ms:.3g} ms per item, {settings.batch_chunk_target_ms:g} ms per chunk"
    if items is not None:
        spread = math.ceil(items / (2 * max(1, window)))
        if spread < size:
            size, reason = spread, f"{reason}, {items} items over {window} chunks in flight"
    return ChunkChoice(max(floor, size), reason)
