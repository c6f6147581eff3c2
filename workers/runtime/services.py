"""``Runtime``: the per-process services of one app, and the one typed way to reach them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from celery import Celery, Task

from workers.cache import CacheProvider, install_cache
from workers.core.keys import Keys
from workers.core.settings import Mode, Settings
from workers.ledger import Ledger, MemoryLedger, RedisLedger
from workers.skills.executor import SkillExecutor
from workers.skills.registry import SkillRegistry

# What ``app.task(...)`` returns: a decorator that registers a function as a task.
TaskDecorator = Callable[[Callable[..., Any]], Task[Any, Any]]

_ATTRIBUTE = "victor"


class Runtime:
    """Per-process services of one app: settings, registry, executor, cache, ledger."""

    def __init__(self, settings: Settings, registry: SkillRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.keys = Keys(settings.key_prefix)
        self.executor = SkillExecutor(settings, registry)
        self.cache: CacheProvider = install_cache(self)
        self._ledger: Ledger | None = None

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            if self.settings.mode is Mode.DISTRIBUTED:
                url = self.settings.state_url
                self._ledger = RedisLedger(url, self.keys, self.settings.result_expires_s)
            else:
                self._ledger = MemoryLedger()
        return self._ledger

    def attach(self, app: Celery) -> None:
        """Make this the runtime of ``app`` (``runtime_of(app)`` returns it)."""
        setattr(app, _ATTRIBUTE, self)


def runtime_of(app: Celery) -> Runtime:
    """The ``Runtime`` that ``create_app`` attached to ``app``."""
    runtime = getattr(app, _ATTRIBUTE, None)
    if not isinstance(runtime, Runtime):
        raise TypeError(f"{app!r} was not built by workers.celery_app.create_app")
    return runtime


def has_runtime(app: Any) -> bool:
    """Whether ``app`` is a Celery app with a runtime attached."""
    return isinstance(getattr(app, _ATTRIBUTE, None), Runtime)


def task_decorator(app: Celery, **options: Any) -> TaskDecorator:
    """``app.task(**options)``, typed (the stubs cannot pick an overload from ``**options``)."""
    return cast(TaskDecorator, app.task(**options))
