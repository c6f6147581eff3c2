"""The guide's production profiles as presets (``VICTOR_PROFILE``); explicit settings win."""

from __future__ import annotations

from typing import Any, Literal

ProfileName = Literal["default", "production", "high_throughput", "low_latency"]

PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "production": {
        "lazy_loading_enabled": True,
        "max_parallel_workers": 8,
        "tool_selection_cache_size": 2000,
        "response_cache_size": 2000,
        "memory_limit_mb": 2048,
        "memory_warning_threshold": 0.85,
        "cache_auto_invalidate": True,
        "worker_prefetch_multiplier": 1,
    },
    "high_throughput": {
        "lazy_loading_enabled": False,
        "max_parallel_workers": 16,
        "parallel_threshold": 2,
        "tool_selection_cache_size": 5000,
        "response_cache_size": 5000,
        "embedding_cache_size": 50000,
        "memory_limit_mb": 4096,
        "chunk_size": 200,
        "worker_prefetch_multiplier": 4,
    },
    "low_latency": {
        "lazy_loading_enabled": False,
        "max_parallel_workers": 8,
        "parallel_threshold": 2,
        "tool_selection_cache_ttl": 7200,
        "response_cache_ttl": 7200,
        "chunk_size": 10,
        "worker_prefetch_multiplier": 1,
    },
}
