"""A guard for kombu's Redis transport, so a worker survives a Redis restart.

When the broker connection drops while the consumer waits in BRPOP, the worker first
*collects* the connection: closing the channel reads the pending BRPOP reply from the dead
socket, that raises a connection error (swallowed), and the channel stays open while the
transport is detached from its connection (``transport.client = None``). The worker then
closes the connection again; this time the channel's close restores unacked messages, needs
a new Redis pool, and ``Channel._connparams`` reads ``None.hostname``: an AttributeError, which
no caller treats as a connection error, so the worker stops with "Unrecoverable error"
(seen in kombu 5.7.0 under the A7 scenario, about one restart in four).

The guard turns that case into the connection error it is. The close then completes quietly;
the channel's unacked messages stay in the unacked hash in Redis and come back through the
visibility-timeout restore sweep, as after any lost connection.
"""

from __future__ import annotations

from typing import Any

_INSTALLED = False


def install() -> None:
    """Patch ``kombu.transport.redis.Channel._connparams`` once per process (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    from redis.exceptions import ConnectionError as RedisConnectionError

    from workers.celery_app.internals import (
        redis_channel_connparams,
        set_redis_channel_connparams,
    )

    original = redis_channel_connparams()

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if getattr(self.connection, "client", None) is None:
            raise RedisConnectionError("the broker connection was already released; reconnecting")
        return original(self, asynchronous=asynchronous)

    _connparams.victor_guard = True  # type: ignore[attr-defined]  # a marker on the function
    set_redis_channel_connparams(_connparams)
    _INSTALLED = True
