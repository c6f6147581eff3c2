"""A session: one app plus, in embedded mode, the in-process worker that serves it."""

from __future__ import annotations

import gc
from contextlib import ExitStack
from types import TracebackType
from typing import Any

from celery import Celery

from workers.celery_app.factory import create_app
from workers.celery_app.internals import remove_pending_result
from workers.core.settings import Mode, Settings
from workers.skills.registry import SkillRegistry


class Session:
    """Owns the Celery app for one entry point; starts an embedded worker when needed."""

    def __init__(self, settings: Settings, registry: SkillRegistry | None = None) -> None:
        self.settings = settings
        self.app: Celery = create_app(settings, registry)
        self._stack = ExitStack()
        self._started = False
        self.worker: Any = None  # the embedded worker, while it runs
        self.tuner: Any = None  # its in-process tuner (orchestrator.tuner.local)

    @property
    def embedded(self) -> bool:
        return self.settings.mode is Mode.EMBEDDED

    def start(self) -> Session:
        if not self._started and self.embedded:
            from orchestrator.tuner.local import tuned_in_process
            from workers.celery_app.embedded import embedded_worker

            self.worker = self._stack.enter_context(embedded_worker(self.app))
            # The embedded worker's pool is tuned in place, as a fleet's workers are.
            self.tuner = self._stack.enter_context(tuned_in_process(self.settings, self.worker))
        self._started = True
        return self

    def close(self) -> None:
        self._stack.close()
        self._started = False
        # Celery results unsubscribe from Redis when collected; do it now, while the
        # interpreter can still run that code, not during its shutdown.
        gc.collect()
        backend = self.app.backend
        for mapping in getattr(backend, "_pending_results", None) or ():
            for waiters in list(mapping.values()):
                for result in list(waiters.values()):
                    remove_pending_result(backend, result)

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
