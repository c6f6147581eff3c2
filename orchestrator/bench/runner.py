"""Find and run benchmark groups; write each result as JSON under bench-results/."""

from __future__ import annotations

import importlib
import json
import platform
import time
from pathlib import Path
from typing import Any

from orchestrator.bench import GROUPS, SIZES
from workers.core.errors import ConfigError


def list_groups() -> list[str]:
    return sorted(GROUPS)


def run_group(group: str, size: str = "default", out_dir: Path | None = None) -> dict[str, Any]:
    """Run ``group`` at ``size``; returns its result (with ``ratio``) and saves it."""
    if group not in GROUPS:
        raise ConfigError(f"no benchmark group {group!r}; known groups: {', '.join(list_groups())}")
    if size not in SIZES:
        raise ConfigError(f"size {size!r} is not one of {', '.join(SIZES)}")
    module_name, _, function_name = GROUPS[group].partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    started = time.time()
    result: dict[str, Any] = {"group": group, "size": size, **function(size)}
    result["elapsed_s"] = round(time.time() - started, 3)
    result["machine"] = {"python": platform.python_version(), "cpus": _cpus()}
    target = out_dir or Path("bench-results")
    target.mkdir(parents=True, exist_ok=True)
    (target / f"{group}-{size}.json").write_text(json.dumps(result, indent=2))
    return result


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def run_benchmark(group: str = "tool_selection", iterations: int = 100) -> dict[str, Any]:
    """The guide's call: run ``group`` for ``iterations`` (groups that count iterations) or at
    the default size, and return its figures (for tool_selection: latency_ms, throughput,
    hit_rate, reduction)."""
    if group not in GROUPS:
        raise ConfigError(f"no benchmark group {group!r}; known groups: {', '.join(list_groups())}")
    module_name, _, _ = GROUPS[group].partition(":")
    module = importlib.import_module(module_name)
    by_iterations = getattr(module, "run_iterations", None)
    if by_iterations is not None:
        return {"group": group, **by_iterations(iterations)}
    return run_group(group, "default")
