"""L1: an in-process LRU bounded by entries and bytes, with a TTL that a hit does not extend.

The bounds may be callables read at each store: raising one takes effect at once (the store
grows in place), lowering one evicts the oldest entries at the next store or ``fit()``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Final

MISSING: Final = object()

# An entry is (value, expires_at on the monotonic clock, accounted bytes).
_Entry = tuple[Any, float, int]


class LRUStore:
    """O(1) get/put on an OrderedDict; the oldest entries go first when a bound is exceeded."""

    def __init__(
        self,
        max_entries: int | Callable[[], int],
        max_bytes: int | Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.evictions = 0
        self.expirations = 0

    @property
    def max_entries(self) -> int:
        bound = self._max_entries
        return bound() if callable(bound) else bound

    @property
    def max_bytes(self) -> int:
        bound = self._max_bytes
        return bound() if callable(bound) else bound

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> Any:
        """The live value for ``key`` (now most recent) or ``MISSING``; expiry is never reset."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return MISSING
            if entry[1] <= self._clock():
                del self._data[key]
                self.bytes -= entry[2]
                self.expirations += 1
                return MISSING
            self._data.move_to_end(key)
            return entry[0]

    def _expire_locked(self, key: str, entry: _Entry) -> None:
        """Drop the expired ``entry`` of ``key``; call with the lock held."""
        del self._data[key]
        self.bytes -= entry[2]
        self.expirations += 1

    def put(self, key: str, value: Any, size: int, ttl_s: float) -> bool:
        """Store ``value`` for ``ttl_s`` seconds; False when it alone exceeds the byte bound."""
        if ttl_s <= 0:
            return False
        max_bytes = self.max_bytes
        if size > max_bytes:
            return False
        max_entries = self.max_entries
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= old[2]
            self._data[key] = (value, self._clock() + ttl_s, size)
            self.bytes += size
            self._evict_locked(max_entries, max_bytes)
        return True

    def _evict_locked(self, max_entries: int, max_bytes: int) -> int:
        """Drop the oldest entries until both bounds hold; call with the lock held."""
        count = 0
        while self._data and (len(self._data) > max_entries or self.bytes > max_bytes):
            _, evicted = self._data.popitem(last=False)
            self.bytes -= evicted[2]
            count += 1
        self.evictions += count
        return count

    def fit(self) -> int:
        """Evict down to the current bounds (after a bound was lowered); returns how many."""
        max_entries, max_bytes = self.max_entries, self.max_bytes
        with self._lock:
            if len(self._data) <= max_entries and self.bytes <= max_bytes:
                return 0
            return self._evict_locked(max_entries, max_bytes)

    def copy_from(self, other: LRUStore) -> int:
        """Take ``other``'s live entries (same expiry, same order) that are not here yet, then
        fit the bounds; returns how many were taken."""
        now = other._clock()
        with other._lock:
            entries = [(key, entry) for key, entry in other._data.items() if entry[1] > now]
        taken = 0
        with self._lock:
            for key, entry in entries:
                if key not in self._data:
                    self._data[key] = entry
                    self.bytes += entry[2]
                    taken += 1
            self._evict_locked(self.max_entries, self.max_bytes)
        return taken

    def delete(self, key: str) -> bool:
        with self._lock:
            entry = self._data.pop(key, None)
            if entry is None:
                return False
            self.bytes -= entry[2]
            return True

    def delete_where(self, predicate: Callable[[str], bool]) -> int:
        """Remove every key for which ``predicate`` is true; O(n), for invalidation only."""
        with self._lock:
            doomed = [key for key in self._data if predicate(key)]
            for key in doomed:
                self.bytes -= self._data.pop(key)[2]
        return len(doomed)

    def clear(self) -> int:
        with self._lock:
            count = len(self._data)
            self._data.clear()
            self.bytes = 0
        return count

    def clear_expired(self) -> int:
        """Drop every expired entry now (the periodic sweep); returns how many."""
        now = self._clock()
        with self._lock:
            doomed = [key for key, entry in self._data.items() if entry[1] <= now]
            for key in doomed:
                self.bytes -= self._data.pop(key)[2]
            self.expirations += len(doomed)
        return len(doomed)

    def keys(self) -> Iterable[str]:
        with self._lock:
            return list(self._data)
