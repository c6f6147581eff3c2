"""Typed access to the Celery and kombu internals we use that celery-types does not declare.

The stubs (celery-types) cover Celery's public API; a few private or undocumented names we rely
on are missing from them. Each is reached here, once, through an ``Any`` handle and given a
typed signature, so the rest of the code stays checked and a Celery upgrade has one place to
look. Nothing here changes what Celery does: every function is the plain attribute access or
call it wraps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from celery import Celery
    from celery.backends.base import Backend
    from celery.result import AsyncResult

# ``celery._state``: the stubs declare its public functions, but not ``default_app`` (the
# app-of-last-resort that pool threads fall back to) or ``_set_task_join_will_block``.


def default_app() -> Celery | None:
    """``celery._state.default_app``: the process's default app, if one was set."""
    from celery import _state

    state: Any = _state
    return cast("Celery | None", state.default_app)


def set_default_app(app: Celery | None) -> None:
    """``celery._state.set_default_app``; the stubs take only an app, but ``None`` (no default
    app, as before any was set) is a value ``default_app()`` returns and must restore."""
    from celery import _state

    state: Any = _state
    state.set_default_app(app)


def set_task_join_will_block(blocks: bool) -> None:
    """``celery._state._set_task_join_will_block``: whether ``result.get()`` is forbidden here."""
    from celery import _state

    state: Any = _state
    state._set_task_join_will_block(blocks)


# ``celery.worker.control``: the stubs declare the ``Panel`` registry but not the command
# functions registered in it; we call two of them in process (the local tuner).


def pool_grow(state: Any, n: int) -> dict[str, Any]:
    """The ``pool_grow`` control command, run in this process on ``state.consumer``."""
    from celery.worker import control

    handle: Any = control
    return cast("dict[str, Any]", handle.pool_grow(state, n=n))


def pool_shrink(state: Any, n: int) -> dict[str, Any]:
    """The ``pool_shrink`` control command, run in this process on ``state.consumer``."""
    from celery.worker import control

    handle: Any = control
    return cast("dict[str, Any]", handle.pool_shrink(state, n=n))


def remove_pending_result(backend: Backend, result: AsyncResult[Any]) -> None:
    """``backend.remove_pending_result(result)``: stop waiting for ``result``.

    Every result backend class has it at run time (from ``SyncBackendMixin`` or
    ``AsyncBackendMixin``); the stubs declare it on those mixins only, not on ``Backend``,
    which is what ``app.backend`` is typed as.
    """
    handle: Any = backend
    handle.remove_pending_result(result)


# ``kombu.transport.redis.Channel._connparams``: private, so not in the stubs; the guard in
# ``kombu_patches`` wraps it.

ConnParams = Callable[..., Any]


def redis_channel_connparams() -> ConnParams:
    """The current ``kombu.transport.redis.Channel._connparams``."""
    from kombu.transport import redis as transport

    channel: Any = transport.Channel
    return cast(ConnParams, channel._connparams)


def set_redis_channel_connparams(function: ConnParams) -> None:
    """Replace ``kombu.transport.redis.Channel._connparams`` for every channel."""
    from kombu.transport import redis as transport

    channel: Any = transport.Channel
    channel._connparams = function
