"""The concurrency tuner's pure policy: the next pool size of one worker from its samples."""

from orchestrator.tuner.policy import (
    Decision,
    SizeRecord,
    TunerBounds,
    TunerSample,
    TunerState,
    new_state,
    next_concurrency,
)

__all__ = [
    "Decision",
    "SizeRecord",
    "TunerBounds",
    "TunerSample",
    "TunerState",
    "new_state",
    "next_concurrency",
]
