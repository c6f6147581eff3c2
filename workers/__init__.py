"""The runtime every victor-fleet process shares.

``celery -A workers worker`` finds ``app`` here; it is built on first access so that importing
``workers`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workers.core.errors import ConfigError, VictorError
from workers.core.settings import Settings, load_settings

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["ConfigError", "Settings", "VictorError", "app", "create_app", "load_settings"]

_app: Celery | None = None


def create_app(*args: Any, **kwargs: Any) -> Celery:
    from workers.celery_app.factory import create_app as factory

    return factory(*args, **kwargs)


def __getattr__(name: str) -> Any:
    global _app
    if name in ("app", "celery"):
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
