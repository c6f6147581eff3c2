"""Cache keys: canonical input, its sha256, file content fingerprints, the tenant in scope."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from json.encoder import encode_basestring
from typing import Any

from workers.core.errors import ConfigError

_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_current_tenant: ContextVar[str | None] = ContextVar("victor_cache_tenant", default=None)


def check_tenant(tenant: str) -> str:
    """Return ``tenant`` if it is safe inside a key, else raise ConfigError."""
    if not _TENANT.match(tenant):
        raise ConfigError(
            f"tenant {tenant!r} is not a valid tenant name; use 1-64 letters, digits, '_', '.', '-'"
        )
    return tenant


def safe_tenant(tenant: str) -> str:
    """``tenant`` itself when it is a valid name, else ``+`` and its sha256 (never a valid name,
    so a tenant the API admitted with other characters gets a key part of its own)."""
    if _TENANT.match(tenant):
        return tenant
    return "+" + hashlib.sha256(tenant.encode()).hexdigest()


@contextmanager
def tenant_scope(tenant: str) -> Iterator[None]:
    """Cache lookups in this block (this thread or task) belong to ``tenant``."""
    token = _current_tenant.set(safe_tenant(tenant))
    try:
        yield
    finally:
        _current_tenant.reset(token)


def scoped_tenant() -> str | None:
    """The tenant set by ``tenant_scope`` in this context, if any."""
    return _current_tenant.get()


def current_tenant(default: str) -> str:
    """The tenant set by ``tenant_scope``, else ``default`` (``Settings.tenant``)."""
    return _current_tenant.get() or default


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces, no NaN."""
    return _CANONICAL.encode(value).encode()


def digest(value: Any) -> str:
    """sha256 of the canonical form of ``value`` (what keys carry instead of raw input)."""
    if type(value) is list and all(type(part) is str for part in value):
        # The same bytes as canonical() for a list of strings, without the encoder's set-up.
        encoded = ("[" + ",".join(map(encode_basestring, value)) + "]").encode()
        return hashlib.sha256(encoded).hexdigest()
    return hashlib.sha256(canonical(value)).hexdigest()


def file_fingerprint(path: str, chunk_bytes: int = 1 << 20) -> dict[str, Any] | None:
    """The resolved path, size and content sha256 of a regular file, or None if unreadable.

    The content hash (not the mtime) goes into the key, so any edit is a miss.
    """
    try:
        resolved = os.path.realpath(path)
        hasher = hashlib.sha256()
        size = 0
        if not os.path.isfile(resolved):
            return None
        with open(resolved, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                hasher.update(chunk)
                size += len(chunk)
    except (OSError, ValueError):
        return None
    return {"path": resolved, "bytes": size, "sha256": hasher.hexdigest()}
