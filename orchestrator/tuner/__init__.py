"""The concurrency tuner. Re-exported here: its pure policy (the next pool size of one worker
from its samples). Beside it: ``sample`` (metrics -> sample), ``actuation`` (remote control),
``lease``, ``journal`` (Redis records and the decision stream), ``replicas``, ``runner`` (the
loop) and ``status``; import those by module."""

from orchestrator.tuner.policy import (
    Decision,
    ProviderSlots,
    SizeRecord,
    TunerBounds,
    TunerSample,
    TunerState,
    new_state,
    next_concurrency,
)

__all__ = [
    "Decision",
    "ProviderSlots",
    "SizeRecord",
    "TunerBounds",
    "TunerSample",
    "TunerState",
    "new_state",
    "next_concurrency",
]
