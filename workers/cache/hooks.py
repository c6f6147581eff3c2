"""Plug the caches into a runtime: the executor's response-cache hook, and the skills' access."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from workers.cache.backends import forks
from workers.cache.keying import file_fingerprint, safe_tenant, scoped_tenant
from workers.cache.lru import MISSING
from workers.cache.manager import CacheManager
from workers.cache.managers import cache_manager
from workers.core.errors import AccessDeniedError
from workers.core.names import TENANT_HEADER
from workers.core.paths import confine
from workers.core.settings import Settings
from workers.skills.spec import SkillSpec


class CacheProvider:
    """Returns this process's cache manager for one settings object (created on first use).

    Kept by the runtime, so the manager lives as long as the app; after a fork the child
    builds its own (threads and sockets do not cross a fork). A manager built on another
    settings object with equal values is asked for again at each use: once this object's
    values move away from it, the registry gives this object a manager of its own.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._manager: CacheManager | None = None
        self._forks = -1

    def __call__(self) -> CacheManager:
        manager = self._manager
        if (
            manager is None
            or manager.closed
            or manager.settings is not self.settings
            or self._forks != forks()
        ):
            manager = self._manager = cache_manager(self.settings)
            self._forks = forks()
        return manager

    @property
    def started(self) -> CacheManager | None:
        """The manager if this process already made one (never creates it)."""
        return self._manager if self._forks == forks() else None


def skill_environment(settings: Settings) -> dict[str, Any]:
    """Settings a skill's result may depend on: part of every response-cache key."""
    return {
        "max_file_bytes": settings.max_file_bytes,
        "allowed_roots": sorted(os.path.realpath(root) for root in settings.allowed_roots),
        "provider": settings.provider,
        "model": settings.model,
    }


def task_tenant() -> str | None:
    """The tenant of the Celery task running in this thread (message header ``victor_tenant``)."""
    if "celery" not in sys.modules:
        return None  # no task can be running, and importing Celery to learn that is slow
    from celery import current_task

    if not current_task:
        return None
    request = current_task.request
    tenant = getattr(request, TENANT_HEADER, None)
    if tenant is None:
        tenant = (getattr(request, "headers", None) or {}).get(TENANT_HEADER)
    return safe_tenant(tenant) if isinstance(tenant, str) and tenant else None


class ResponseCacheHook:
    """The executor's cache hook: cacheable skills go through the ``response`` cache."""

    def __init__(self, provider: CacheProvider) -> None:
        self.provider = provider

    def __call__(self, spec: SkillSpec, model: BaseModel, compute: Callable[[], Any]) -> Any:
        cache = self.provider().response
        if not cache.enabled():
            return compute()
        key = self.key(spec, model)
        if key is None:
            return compute()  # let the skill report the missing or unreadable file
        return cache.get_or_compute(key, compute)

    def key(self, spec: SkillSpec, model: BaseModel) -> str | None:
        """The response-cache key of one call, or None when its file cannot be read."""
        material: dict[str, Any] = {
            "input": model.model_dump(mode="json"),
            "env": skill_environment(self.provider.settings),
        }
        if spec.file_param:
            # The file the skill reads: a relative path lies under the first allowed root
            # (``confine``), not under this process's working directory.
            try:
                path = confine(
                    str(getattr(model, spec.file_param)), self.provider.settings.allowed_roots
                )
            except AccessDeniedError:
                return None
            fingerprint = file_fingerprint(str(path))
            if fingerprint is None:
                return None
            material["file"] = fingerprint
        cache = self.provider().response
        return cache.key(spec.name, spec.version, material, tenant=scoped_tenant() or task_tenant())

    def lookup(self, spec: SkillSpec, model: BaseModel) -> Any:
        """The cached result of one call, or ``MISSING`` (never computes, never locks)."""
        cache = self.provider().response
        if not cache.enabled():
            return MISSING
        key = self.key(spec, model)
        return MISSING if key is None else cache.get(key)


def install_cache(runtime: Any) -> CacheProvider:
    """Wire the caches into an app's runtime (executor hook and the skills' ``cache`` service)."""
    provider = CacheProvider(runtime.settings)
    runtime.cache = provider
    runtime.executor.cache_hook = ResponseCacheHook(provider)
    runtime.executor.context.services["cache"] = provider
    return provider
