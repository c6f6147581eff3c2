"""The job submission API (FastAPI): jobs, results as Server-Sent Events, skills, health.

``create_api`` is imported on first access so that the ``victor`` CLI, which registers the
``api`` commands from this package, does not import FastAPI on every run.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_api"]


def __getattr__(name: str) -> Any:
    if name == "create_api":
        from orchestrator.api.app import create_api

        return create_api
    raise AttributeError(f"module 'orchestrator.api' has no attribute {name!r}")
