"""Embedded mode's run store: two tables in the cache directory's SQLite file.

The file is the one the SQLite cache uses (``Settings.cache_dir``/cache.sqlite3, or
``cache_url = sqlite:///path``); WAL mode lets a ``victor batch show`` read it while a run
writes. With ``VICTOR_CACHE_DIR=none`` there is no file: the store lives in memory and the run
cannot be resumed (the command says so).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orchestrator.batch.record import ChunkSet, Progress, RunNotFoundError, RunRecord
from workers.cache.sqlite import FILE_NAME, SCHEME, sqlite_path
from workers.core.errors import BackendUnavailableError
from workers.core.settings import Settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_runs (
    run_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, fingerprint TEXT NOT NULL,
    status TEXT NOT NULL, created_at REAL NOT NULL, record TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batch_runs_tenant ON batch_runs (tenant, created_at);
CREATE TABLE IF NOT EXISTS batch_chunks (
    run_id TEXT NOT NULL, chunk INTEGER NOT NULL, PRIMARY KEY (run_id, chunk)
) WITHOUT ROWID;
"""


def run_store_path(settings: Settings) -> str | None:
    """The SQLite file of embedded mode's run records (None: no cache directory)."""
    url = settings.cache_url
    if url and url.startswith(SCHEME):
        return sqlite_path(url)
    if not settings.cache_dir:
        return None
    return os.path.join(settings.cache_dir, FILE_NAME)


class SqliteRunStore:
    """Run records in SQLite; every commit is one transaction."""

    def __init__(self, path: str | None) -> None:
        self.durable = path is not None
        self.path = path or ":memory:"
        if path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            self._db = sqlite3.connect(
                self.path, timeout=30, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"opening run records in {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction, its lock taken before the first read (no lost updates)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _write(self, record: RunRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO batch_runs VALUES (?, ?, ?, ?, ?, ?)",
            (
                record.run_id,
                record.tenant,
                record.fingerprint,
                record.status,
                record.created_at,
                json.dumps(record.as_dict()),
            ),
        )

    def create(self, record: RunRecord) -> None:
        with self._transaction():
            self._write(record)

    def get(self, run_id: str) -> RunRecord:
        with self._lock:
            row = self._db.execute(
                "SELECT record FROM batch_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        if row is None:
            raise RunNotFoundError(f"no batch run with id {run_id!r}; see victor batch list")
        return RunRecord.from_dict(json.loads(row[0]))

    def runs(self, tenant: str, limit: int = 50) -> list[RunRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM batch_runs WHERE tenant = ? ORDER BY created_at DESC LIMIT ?",
                (tenant, limit),
            ).fetchall()
        return [RunRecord.from_dict(json.loads(row[0])) for row in rows]

    def find_latest(self, tenant: str, fingerprint: str) -> RunRecord | None:
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM batch_runs WHERE tenant = ? AND fingerprint = ? "
                "ORDER BY created_at DESC LIMIT 1",
                (tenant, fingerprint),
            ).fetchall()
        return RunRecord.from_dict(json.loads(rows[0][0])) if rows else None

    def chunks(self, run_id: str) -> ChunkSet:
        committed = ChunkSet()
        with self._lock:
            for (chunk,) in self._db.execute(
                "SELECT chunk FROM batch_chunks WHERE run_id = ?", (run_id,)
            ):
                committed.add(int(chunk))
        return committed

    def commit(self, run_id: str, chunks: list[int], progress: Progress) -> str:
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO batch_chunks VALUES (?, ?)",
                [(run_id, chunk) for chunk in chunks],
            )
            record = self._get_locked(run_id)
            for name, value in vars(progress).items():
                setattr(record, name, value)
            record.updated_at = time.time()
            self._write(record)
            return record.status

    def _get_locked(self, run_id: str) -> RunRecord:
        row = self._db.execute(
            "SELECT record FROM batch_runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise RunNotFoundError(f"no batch run with id {run_id!r}; see victor batch list")
        return RunRecord.from_dict(json.loads(row[0]))

    def update(self, run_id: str, **fields: Any) -> None:
        with self._transaction():
            record = self._get_locked(run_id)
            for name, value in fields.items():
                setattr(record, name, value)
            record.updated_at = time.time()
            self._write(record)

    def close(self) -> None:
        with self._lock:
            self._db.close()
