"""One SDK client per process and provider, each on its own pooled HTTP client.

The SDKs (``openai``, ``anthropic``: the ``providers`` extra) are imported on the first call,
never when a worker or the CLI starts. The pool's limits come from ``connection_pool_size``
(connections kept alive) and ``connection_pool_max_overflow`` (more connections opened under
load, up to size + overflow in all); the SDK's ``timeout`` and ``max_retries`` from the
provider's own settings. A change of any of them builds a new client on the next call; a
forked child builds its own (sockets do not cross a fork).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from workers.core.errors import MissingExtraError
from workers.providers.config import ProviderConfig

_SDK_MODULES = {"openai": "openai", "anthropic": "anthropic", "local": "openai"}


@dataclass
class PooledClient:
    """An SDK client and the pooled HTTP client under it."""

    sdk: Any
    http: Any
    fingerprint: str


_clients: dict[tuple[int, str], PooledClient] = {}
_lock = threading.Lock()


def sdk_module(config: ProviderConfig) -> ModuleType:
    """The SDK of ``config``'s family, imported now (first use)."""
    name = _SDK_MODULES[config.family]
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingExtraError(
            f"provider {config.name!r} needs the {name!r} package; run "
            "pip install 'victor-fleet[providers]'"
        ) from exc


def _fingerprint(config: ProviderConfig) -> str:
    # The key is part of the identity (a new key needs a new client) but only as a digest:
    # nothing here prints or stores it.
    material = repr(
        (
            config.family,
            config.base_url,
            config.timeout_s,
            config.max_retries,
            config.pool_size,
            config.pool_max_overflow,
            hashlib.sha256(config.api_key.encode()).hexdigest(),
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _httpx_of(sdk: ModuleType) -> ModuleType:
    """The httpx package the SDK is built on (``httpx``, or ``httpx2`` in later SDKs)."""
    base = sdk.DefaultHttpxClient.__mro__[1]
    return importlib.import_module(base.__module__.partition(".")[0])


def http_client(config: ProviderConfig, sdk: ModuleType) -> Any:
    """A pooled HTTP client with ``config``'s limits and timeout (the SDK's own httpx)."""
    httpx = _httpx_of(sdk)
    limits = httpx.Limits(
        max_connections=config.max_connections,
        max_keepalive_connections=config.pool_size,
    )
    return sdk.DefaultHttpxClient(limits=limits, timeout=config.timeout_s)


def _build(config: ProviderConfig, fingerprint: str) -> PooledClient:
    sdk = sdk_module(config)
    http = http_client(config, sdk)
    options: dict[str, Any] = {
        "api_key": config.api_key,
        "timeout": config.timeout_s,
        "max_retries": config.max_retries,
        "http_client": http,
    }
    if config.base_url:
        options["base_url"] = config.base_url
    factory = sdk.Anthropic if config.family == "anthropic" else sdk.OpenAI
    return PooledClient(factory(**options), http, fingerprint)


def pooled_client(config: ProviderConfig) -> PooledClient:
    """This process's client for ``config``'s provider (built, or rebuilt, on demand)."""
    slot = (os.getpid(), config.name)
    fingerprint = _fingerprint(config)
    with _lock:
        current = _clients.get(slot)
        if current is not None and current.fingerprint == fingerprint:
            return current
        client = _clients[slot] = _build(config, fingerprint)
    if current is not None:
        current.http.close()  # settings changed: in-flight calls on it finish or fail
    return client


def unpooled_client(config: ProviderConfig) -> PooledClient:
    """A new client with its own connections (the bench's baseline; close it after use)."""
    return _build(config, _fingerprint(config))


def close_clients() -> None:
    """Close every client this process built (tests, shutdown)."""
    with _lock:
        mine = [key for key in _clients if key[0] == os.getpid()]
        closing = [_clients.pop(key) for key in mine]
    for client in closing:
        client.http.close()


def _forget_after_fork() -> None:
    global _lock
    _clients.clear()
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
