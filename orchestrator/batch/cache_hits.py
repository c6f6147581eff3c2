"""Cache hits of a run: the response cache's hit counter now, less what it was at the start.

In embedded mode the counter is this process's (the worker runs here), so the figure is the
run's own. On a fleet it is the sum the workers publish to Redis: it lags by their publishing
interval and counts every job the fleet runs at the same time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from workers.cache.admin import get_cache_stats
from workers.core.errors import VictorError
from workers.core.settings import Settings

SAMPLE_EVERY_S = 1.0

HitReader = Callable[[], int | None]


def response_hits(settings: Settings) -> HitReader:
    """A reader of the response cache's hits for ``settings`` (None when the figures are
    unavailable, for example while Redis is away)."""

    def read() -> int | None:
        try:
            stats = get_cache_stats(settings)
        except VictorError:
            return None
        return int(stats.get("caches", {}).get("response", {}).get("hits", 0))

    return read


class CacheHitCounter:
    """Hits since the counter was made, read at most once per ``every_s``."""

    def __init__(self, read: HitReader, every_s: float = SAMPLE_EVERY_S) -> None:
        self._read = read
        self._every_s = every_s
        self._baseline = read()
        self._last: int | None = 0 if self._baseline is not None else None
        self._read_at = time.monotonic()

    def hits(self, *, fresh: bool = False) -> int | None:
        """The hits so far (the last sample unless ``fresh`` or the sample is old)."""
        if self._baseline is None:
            return None
        now = time.monotonic()
        if fresh or now - self._read_at >= self._every_s:
            value = self._read()
            self._read_at = now
            if value is not None:
                self._last = max(0, value - self._baseline)
        return self._last
