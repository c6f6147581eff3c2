"""Benchmark groups: each measures ours and the peer's in one run and reports the ratio.

A group is a function ``run(size: str) -> dict`` returning at least ``group``, ``ratio``
(ours / peer's, as the group defines it), ``ours``, ``peer`` and ``unit``.
"""

from __future__ import annotations

GROUPS: dict[str, str] = {
    "cache": "orchestrator.bench.cache:run",
    "tool_selection": "orchestrator.bench.tool_selection:run",
    "dispatch": "orchestrator.bench.dispatch:run",
    "lazy_loading": "orchestrator.bench.lazy_loading:run",
    "parallel": "orchestrator.bench.parallel:run",
    "metrics": "orchestrator.bench.metrics:run",
    "streaming": "orchestrator.bench.streaming:run",
    "api": "orchestrator.bench.api:run",
    "tuner": "orchestrator.bench.tuner:run",
    "analyze": "orchestrator.bench.analyze:run",
    "providers": "orchestrator.bench.providers:run",
    "batch": "orchestrator.bench.batch:run",
}

SIZES = ("tiny", "default", "full")
