"""L2 in a SQLite file: embedded mode's cache that outlives the process (stdlib ``sqlite3``).

One file per user (``Settings.cache_dir``) or ``cache_url = sqlite:///path``. Values are the
same sealed JSON+HMAC envelopes as in Redis (nothing is unpickled). Several processes on one
host may share the file: WAL journal, a busy timeout, and single statements for every
read-modify-write (locks with ``ON CONFLICT ... WHERE``). Broadcasts go through a polling table,
so ``victor cache invalidate`` reaches the L1 of a ``victor analyze`` running next to it.

The file stays bounded: expired rows go in ``sweep()`` (clear_expired_cache and the auto
sweep), and each named cache keeps at most its ``*_size`` rows, oldest written first out.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from workers.cache.backends import _Circuit, forks
from workers.core.errors import BackendUnavailableError, ConfigError

logger = logging.getLogger(__name__)

SCHEME = "sqlite://"
FILE_NAME = "cache.sqlite3"
SCHEMA_VERSION = 1
TRIM_EVERY = 32  # writes to one cache between two row-cap checks
MESSAGE_TTL_S = 60.0
SUBSCRIBER_LIVE_S = 5.0
POLL_S = 0.05

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT NOT NULL UNIQUE, bucket TEXT NOT NULL, value BLOB NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_bucket ON entries (bucket);
CREATE INDEX IF NOT EXISTS entries_expiry ON entries (expires_at);
CREATE TABLE IF NOT EXISTS locks (
    key TEXT PRIMARY KEY, token TEXT NOT NULL, expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, body BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS subscribers (
    id TEXT PRIMARY KEY, channel TEXT NOT NULL, seen_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS acks (
    key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

# Connections a forked child inherited: never used again and never closed (closing one in
# the child could checkpoint the parent's WAL), only kept from the garbage collector.
_abandoned: list[sqlite3.Connection] = []


def sqlite_path(url: str) -> str:
    """The file of ``sqlite:///abs/path`` (or ``sqlite://relative/path``), made absolute."""
    if not url.startswith(SCHEME):
        raise ConfigError(f"cache_url {url!r} is not a sqlite URL; use sqlite:///path/to/file")
    rest = url[len(SCHEME) :]
    if not rest.strip("/"):
        raise ConfigError(f"cache_url {url!r} names no file; use sqlite:///path/to/{FILE_NAME}")
    path = "/" + rest.lstrip("/") if rest.startswith("/") else rest
    return os.path.abspath(os.path.expanduser(path))


def bucket_of(key: str) -> str:
    """The named cache a key belongs to (``prefix:tenant:cache:<name>:...``), else ``""``."""
    parts = key.split(":", 4)
    return parts[3] if len(parts) > 4 and parts[2] == "cache" else ""


class SqliteBackend(_Circuit):
    """L2 in one SQLite file; every call raises BackendUnavailableError when it cannot be used.

    ``row_cap(bucket)`` gives the most rows a named cache may keep (None: unbounded).
    """

    def __init__(
        self,
        path: str,
        row_cap: Callable[[str], int | None] = lambda _bucket: None,
        retry_after_s: float = 1.0,
        timeout_s: float = 5.0,
    ) -> None:
        super().__init__(retry_after_s)
        self.path = os.path.abspath(path)
        self.url = f"{SCHEME}/{self.path.lstrip('/')}"
        self._row_cap = row_cap
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._conn_forks = -1
        self._writes: dict[str, int] = {}

    # --- connection ----------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        # Create the file private to this user before SQLite opens it.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(
            self.path, timeout=self._timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"the file has cache schema {version}, newer than {SCHEMA_VERSION}"
                )
            if version < SCHEMA_VERSION:
                conn.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
            # Short runs never reach the periodic sweep: each one drops what has expired.
            self._sweep_expired(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None or self._conn_forks != forks():
            if conn is not None:
                _abandoned.append(conn)
            self._conn = None
            conn = self._open()
            self._conn, self._conn_forks = conn, forks()
        return conn

    @contextmanager
    def _db(self, what: str) -> Iterator[sqlite3.Connection]:
        """This process's connection, under the lock; sqlite errors become unavailability."""
        try:
            with self._lock:
                yield self._connection()
        except (sqlite3.Error, OSError) as exc:
            self.mark_down()
            raise BackendUnavailableError(
                f"cache file {self.path} failed while {what}: {exc}; the cache serves from "
                "this process (L1) until it works again; if the file is damaged, delete it, or "
                "set VICTOR_CACHE_DIR=none to keep no cache file"
            ) from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._conn_forks == forks():
                self._conn.close()
            self._conn = None

    # --- values --------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        with self._db("reading a cache value") as db:
            row = db.execute(
                "SELECT value FROM entries WHERE key = ? AND expires_at > ?", (key, time.time())
            ).fetchone()
        return None if row is None else bytes(row[0])

    def get_and_check_lock(self, key: str, lock_key: str) -> tuple[bytes | None, bool]:
        now = time.time()
        with self._db("waiting for a cache value") as db:
            row = db.execute(
                "SELECT value FROM entries WHERE key = ? AND expires_at > ?", (key, now)
            ).fetchone()
            locked = db.execute(
                "SELECT 1 FROM locks WHERE key = ? AND expires_at > ?", (lock_key, now)
            ).fetchone()
        return (None if row is None else bytes(row[0])), locked is not None

    def set(self, key: str, raw: bytes, ttl_s: float) -> None:
        bucket = bucket_of(key)
        with self._db("storing a cache value") as db:
            db.execute(
                "INSERT OR REPLACE INTO entries (key, bucket, value, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (key, bucket, raw, time.time() + ttl_s),
            )
            writes = self._writes.get(bucket, 0)
            self._writes[bucket] = writes + 1
            if bucket and writes % TRIM_EVERY == 0:
                self._trim(db, bucket)

    put_value = set

    def _trim(self, db: sqlite3.Connection, bucket: str) -> int:
        """Keep the newest ``row_cap(bucket)`` rows of one named cache; returns rows removed."""
        cap = self._row_cap(bucket)
        if cap is None:
            return 0
        cursor = db.execute(
            "DELETE FROM entries WHERE rowid IN (SELECT rowid FROM entries WHERE bucket = ? "
            "ORDER BY rowid DESC LIMIT -1 OFFSET ?)",
            (bucket, cap),
        )
        return max(0, cursor.rowcount)

    def sweep(self) -> int:
        """Drop expired rows (values, locks, messages, acks) and trim each cache to its cap."""
        with self._db("sweeping expired cache rows") as db:
            removed = self._sweep_expired(db)
            for (bucket,) in db.execute("SELECT DISTINCT bucket FROM entries").fetchall():
                if bucket:
                    removed += self._trim(db, bucket)
        return removed

    @staticmethod
    def _sweep_expired(db: sqlite3.Connection) -> int:
        now = time.time()
        removed = db.execute("DELETE FROM entries WHERE expires_at <= ?", (now,)).rowcount
        db.execute("DELETE FROM locks WHERE expires_at <= ?", (now,))
        db.execute("DELETE FROM acks WHERE expires_at <= ?", (now,))
        db.execute("DELETE FROM messages WHERE created_at <= ?", (now - MESSAGE_TTL_S,))
        db.execute("DELETE FROM subscribers WHERE seen_at <= ?", (now - MESSAGE_TTL_S,))
        return max(0, removed)

    def count(self, pattern: str) -> int:
        """Live rows whose key matches the glob ``pattern``."""
        with self._db("counting cache rows") as db:
            row = db.execute(
                "SELECT count(*) FROM entries WHERE key GLOB ? AND expires_at > ?",
                (pattern, time.time()),
            ).fetchone()
        return int(row[0])

    # --- single-flight locks ---------------------------------------------------------------
    def acquire(self, lock_key: str, token: str, ttl_s: float) -> bool:
        now = time.time()
        with self._db("taking a single-flight lock") as db:
            cursor = db.execute(
                "INSERT INTO locks (key, token, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET token = excluded.token, "
                "expires_at = excluded.expires_at WHERE locks.expires_at <= ?",
                (lock_key, token, now + ttl_s, now),
            )
        return cursor.rowcount == 1

    def release(self, lock_key: str, token: str) -> None:
        with self._db("releasing a single-flight lock") as db:
            db.execute("DELETE FROM locks WHERE key = ? AND token = ?", (lock_key, token))

    def renew(self, lock_key: str, token: str, ttl_s: float) -> bool:
        """Extend the lock's lease to ``ttl_s`` if ``token`` still holds it (and it is live)."""
        now = time.time()
        with self._db("renewing a single-flight lock") as db:
            cursor = db.execute(
                "UPDATE locks SET expires_at = ? WHERE key = ? AND token = ? AND expires_at > ?",
                (now + ttl_s, lock_key, token, now),
            )
        return cursor.rowcount == 1

    # --- invalidation ----------------------------------------------------------------------
    def delete_matching(self, pattern: str) -> int:
        """Delete values (and locks) whose key matches the glob ``pattern``."""
        with self._db("invalidating cache keys") as db:
            removed = db.execute("DELETE FROM entries WHERE key GLOB ?", (pattern,)).rowcount
            db.execute("DELETE FROM locks WHERE key GLOB ?", (pattern,))
        return max(0, removed)

    def values_matching(self, pattern: str) -> list[bytes]:
        with self._db("reading cache statistics") as db:
            rows = db.execute(
                "SELECT value FROM entries WHERE key GLOB ? AND expires_at > ?",
                (pattern, time.time()),
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    # --- broadcasts: a polling table ---------------------------------------------------------
    def publish(self, channel: str, message: bytes) -> int:
        """Append ``message``; returns how many live subscribers (processes) will see it."""
        now = time.time()
        with self._db("broadcasting a cache invalidation") as db:
            db.execute(
                "INSERT INTO messages (channel, body, created_at) VALUES (?, ?, ?)",
                (channel, message, now),
            )
            db.execute("DELETE FROM messages WHERE created_at <= ?", (now - MESSAGE_TTL_S,))
            row = db.execute(
                "SELECT count(*) FROM subscribers WHERE channel = ? AND seen_at > ?",
                (channel, now - SUBSCRIBER_LIVE_S),
            ).fetchone()
        return int(row[0])

    def subscribe(self, channel: str) -> SqliteSubscription:
        return SqliteSubscription(self, channel)

    def push_ack(self, key: str, ttl_s: float) -> None:
        with self._db("acknowledging a cache invalidation") as db:
            db.execute(
                "INSERT INTO acks (key, count, expires_at) VALUES (?, 1, ?) "
                "ON CONFLICT (key) DO UPDATE SET count = count + 1",
                (key, time.time() + ttl_s),
            )

    def wait_acks(self, key: str, count: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._db("waiting for invalidation acknowledgements") as db:
                row = db.execute("SELECT count FROM acks WHERE key = ?", (key,)).fetchone()
                got = 0 if row is None else int(row[0])
                if got >= count or time.monotonic() >= deadline:
                    db.execute("DELETE FROM acks WHERE key = ?", (key,))
                    return got
            time.sleep(0.01)


class SqliteSubscription:
    """Reads a channel's rows after the last one seen; registers itself as a live subscriber."""

    def __init__(self, backend: SqliteBackend, channel: str) -> None:
        self._backend = backend
        self.channel = channel
        self.id = uuid.uuid4().hex
        self._seen_at = 0.0
        with backend._db("subscribing to cache invalidations") as db:
            row = db.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()
            self._last = int(row[0])
            self._heartbeat(db)

    def _heartbeat(self, db: sqlite3.Connection) -> None:
        now = time.time()
        db.execute(
            "INSERT OR REPLACE INTO subscribers (id, channel, seen_at) VALUES (?, ?, ?)",
            (self.id, self.channel, now),
        )
        self._seen_at = now

    def poll(self, timeout_s: float) -> bytes | None:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._backend._db("listening for cache invalidations") as db:
                if time.time() - self._seen_at >= 1.0:
                    self._heartbeat(db)
                row = db.execute(
                    "SELECT id, body FROM messages WHERE channel = ? AND id > ? "
                    "ORDER BY id LIMIT 1",
                    (self.channel, self._last),
                ).fetchone()
            if row is not None:
                self._last = int(row[0])
                return bytes(row[1])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(POLL_S, remaining))

    def close(self) -> None:
        try:
            with self._backend._db("unsubscribing from cache invalidations") as db:
                db.execute("DELETE FROM subscribers WHERE id = ?", (self.id,))
        except BackendUnavailableError as exc:
            logger.warning("%s", exc)
