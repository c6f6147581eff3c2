"""API keys: stored as sha256 hashes (Redis or a keys file), each bound to a tenant and scopes."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from workers.core.errors import AuthenticationError, ConfigError
from workers.core.keys import Keys
from workers.core.redis_client import translated

SCOPES = ("submit", "read", "admin")
KEY_PREFIX = "vk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's tenant and scopes; ``key_id`` is a short hash prefix for logs."""

    tenant: str
    scopes: frozenset[str]
    key_id: str
    name: str = ""

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def hash_key(token: str) -> str:
    """The sha256 hex digest under which a key is stored (the key itself never is)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_scopes(text: str | list[str]) -> frozenset[str]:
    """``submit,read`` -> {"submit", "read"}; unknown scopes are refused by name."""
    items = text.split(",") if isinstance(text, str) else text
    scopes = frozenset(item.strip() for item in items if item.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        raise ConfigError(
            f"unknown scope(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(SCOPES)}"
        )
    return scopes


def _record(tenant: str, scopes: frozenset[str], name: str) -> dict[str, Any]:
    return {"tenant": tenant, "scopes": sorted(scopes), "name": name, "created_at": time.time()}


class KeyStore:
    """Looks keys up in the keys file (if configured) first, then in Redis."""

    def __init__(self, keys: Keys, client: redis.Redis | None, keys_file: Path | None) -> None:
        self._keys = keys
        self._redis = client
        self._file = keys_file
        self._file_lock = threading.Lock()
        self._file_mtime: float | None = None
        self._file_entries: dict[str, dict[str, Any]] = {}

    # --- lookup -----------------------------------------------------------------------------
    def authenticate(self, token: str | None) -> Principal:
        """The principal of ``token``; AuthenticationError without one or with an unknown one."""
        if not token:
            raise AuthenticationError(
                "missing API key; send it as 'Authorization: Bearer <key>' (create one with "
                "victor api-key create --tenant T --scopes submit,read)"
            )
        digest = hash_key(token)
        return _principal(digest, self._file_entry(digest) or self._redis_entry(digest))

    async def authenticate_async(self, token: str | None, client: aioredis.Redis) -> Principal:
        """As ``authenticate``, reading a key stored in Redis through ``client`` (asyncio)."""
        if not token:
            self.authenticate(token)  # raises the missing-key error
        assert token is not None
        digest = hash_key(token)
        entry = self._file_entry(digest)
        if entry is None and self._redis is not None:
            with translated("checking an API key"):
                raw: dict[bytes, bytes] = await client.hgetall(self._keys.api_key(digest))  # type: ignore[assignment]
            entry = _entry(raw)
        return _principal(digest, entry)

    def _file_entry(self, digest: str) -> dict[str, Any] | None:
        if self._file is None:
            return None
        with self._file_lock:
            try:
                mtime = self._file.stat().st_mtime
            except FileNotFoundError:
                self._file_entries = {}
                return None
            if mtime != self._file_mtime:
                self._file_entries = read_keys_file(self._file)
                self._file_mtime = mtime
            return self._file_entries.get(digest)

    def _redis_entry(self, digest: str) -> dict[str, Any] | None:
        if self._redis is None:
            return None
        with translated("checking an API key"):
            raw: dict[bytes, bytes] = self._redis.hgetall(self._keys.api_key(digest))  # type: ignore[assignment]
        return _entry(raw)

    # --- creation -----------------------------------------------------------------------------
    def create(self, tenant: str, scopes: frozenset[str], name: str = "") -> str:
        """Make a key, store only its hash, and return the key (shown once)."""
        token = new_key()
        digest = hash_key(token)
        record = _record(tenant, scopes, name)
        if self._file is not None:
            with self._file_lock:
                entries = read_keys_file(self._file) if self._file.exists() else {}
                entries[digest] = record
                write_keys_file(self._file, entries)
        elif self._redis is not None:
            with translated("storing an API key"):
                self._redis.hset(
                    self._keys.api_key(digest),
                    mapping={
                        "tenant": tenant,
                        "scopes": ",".join(sorted(scopes)),
                        "name": name,
                        "created_at": repr(record["created_at"]),
                    },
                )
        else:
            raise ConfigError(
                "nowhere to store API keys; set VICTOR_API_KEYS_FILE or VICTOR_REDIS_URL"
            )
        return token

    def revoke(self, digest_prefix: str) -> int:
        """Delete every stored key whose hash starts with ``digest_prefix``; return how many."""
        if len(digest_prefix) < 8:
            raise ConfigError("give at least 8 hex digits of the key's hash to revoke it")
        removed = 0
        if self._file is not None and self._file.exists():
            with self._file_lock:
                entries = read_keys_file(self._file)
                kept = {k: v for k, v in entries.items() if not k.startswith(digest_prefix)}
                removed += len(entries) - len(kept)
                write_keys_file(self._file, kept)
        if self._redis is not None:
            with translated("revoking an API key"):
                for key in self._redis.scan_iter(self._keys.api_key(digest_prefix) + "*"):
                    removed += int(self._redis.delete(key))
        return removed


def _entry(raw: dict[bytes, bytes]) -> dict[str, Any] | None:
    """A key's Redis hash as a keys-file entry (None for a key that is not stored)."""
    if not raw:
        return None
    fields = {key.decode(): value.decode() for key, value in raw.items()}
    return {
        "tenant": fields["tenant"],
        "scopes": fields["scopes"].split(","),
        "name": fields.get("name", ""),
    }


def _principal(digest: str, entry: dict[str, Any] | None) -> Principal:
    if entry is None:
        raise AuthenticationError("unknown API key; check VICTOR_API_KEY or create a new key")
    return Principal(
        tenant=str(entry["tenant"]),
        scopes=frozenset(entry["scopes"]),
        key_id=digest[:16],
        name=str(entry.get("name", "")),
    )


def read_keys_file(path: Path) -> dict[str, dict[str, Any]]:
    """``{"keys": {sha256: {tenant, scopes, name, created_at}}}`` -> the inner mapping."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"cannot read API keys file {str(path)!r} (VICTOR_API_KEYS_FILE): {exc}"
        ) from exc
    entries = data.get("keys", {}) if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise ConfigError(f'API keys file {str(path)!r} must hold {{"keys": {{...}}}}')
    for digest, entry in entries.items():
        if not isinstance(entry, dict) or "tenant" not in entry or "scopes" not in entry:
            raise ConfigError(
                f"API keys file {str(path)!r}: entry {digest[:12]} lacks tenant/scopes"
            )
        parse_scopes(entry["scopes"])
    return entries


def write_keys_file(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Write atomically with mode 0600 (hashes only, but still nobody else's business)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"keys": entries}, handle, indent=2, sort_keys=True)
    os.replace(temporary, path)
