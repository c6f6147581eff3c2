"""What the routes share: settings, the Celery app, the ledger, keys and Redis, built once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from threading import Lock

import redis
from celery import Celery
from fastapi import Request
from kombu.exceptions import OperationalError

from workers.core.errors import BackendUnavailableError, ConfigError
from workers.core.keys import Keys
from workers.core.redis_client import REDIS_ERRORS, redis_client
from workers.core.settings import Mode, Settings
from workers.ledger import Ledger
from workers.runtime import runtime_of
from workers.skills.registry import SkillRegistry


@dataclass
class Services:
    """One per API app; nothing here touches the network until a request needs it."""

    settings: Settings
    app: Celery
    keys: Keys
    redis_url: str
    # Celery's result consumer keeps one pub/sub connection per app: publish one job at a time.
    dispatch_lock: Lock = field(default_factory=Lock)

    @property
    def ledger(self) -> Ledger:
        return runtime_of(self.app).ledger

    @property
    def registry(self) -> SkillRegistry:
        return runtime_of(self.app).registry

    @property
    def redis(self) -> redis.Redis:
        return redis_client(self.redis_url)


def build_services(settings: Settings, app: Celery | None = None) -> Services:
    """Check the mode and build the shared services (the Celery app once, here)."""
    if settings.mode is not Mode.DISTRIBUTED:
        raise ConfigError(
            "the API serves a Redis-backed fleet; set VICTOR_REDIS_URL (for example "
            "redis://127.0.0.1:6379/0) and start workers with victor worker"
        )
    if app is None:
        from workers.celery_app.factory import create_app

        app = create_app(settings)
    return Services(
        settings=settings, app=app, keys=Keys(settings.key_prefix), redis_url=settings.state_url
    )


async def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


BROKER_ERRORS: tuple[type[BaseException], ...] = (OperationalError, *REDIS_ERRORS)


@contextmanager
def broker_translated(what: str) -> Iterator[None]:
    """Translate broker (kombu) and Redis connection errors into BackendUnavailableError."""
    try:
        yield
    except BROKER_ERRORS as exc:
        raise BackendUnavailableError(
            f"the broker is unreachable while {what}: {exc}; check VICTOR_REDIS_URL and that "
            "redis-server is running"
        ) from exc
