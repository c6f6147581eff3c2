"""Time a running task spent waiting for a shared slot (a provider's concurrency limit).

The reporter counts it as queue wait, not run time: the task was ready but not yet working.
Kept per thread, because a task's signals and its body run in one thread.
"""

from __future__ import annotations

import threading

_local = threading.local()


def add_slot_wait(seconds: float) -> None:
    """Add ``seconds`` of waiting to the task running in this thread."""
    _local.seconds = getattr(_local, "seconds", 0.0) + max(0.0, seconds)


def take_slot_wait() -> float:
    """The waiting added since the last call in this thread, and reset it."""
    seconds: float = getattr(_local, "seconds", 0.0)
    _local.seconds = 0.0
    return seconds
