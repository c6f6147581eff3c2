"""Embedded mode's persistent L2: a SQLite file shared by the runs (processes) of one user."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from workers.cache import MISSING, CacheManager, RedisBackend
from workers.cache.manager import l2_backend
from workers.cache.sqlite import FILE_NAME, SqliteBackend, sqlite_path
from workers.core.errors import ConfigError
from workers.core.settings import Settings

VICTOR = str(Path(sys.executable).with_name("victor"))


def _manager(path: Path, **overrides: Any) -> CacheManager:
    """A manager with its own connection to ``path``: what another process would have."""
    settings = Settings(cache_dir=str(path.parent), **overrides)
    manager = CacheManager(settings)
    assert isinstance(manager.l2, SqliteBackend) and manager.l2.path == str(path)
    return manager.start()


def test_embedded_mode_selects_a_file_in_cache_dir_and_none_disables_it(tmp_path: Path) -> None:
    backend = l2_backend(Settings(cache_dir=str(tmp_path)))
    assert isinstance(backend, SqliteBackend) and backend.path == str(tmp_path / FILE_NAME)
    assert l2_backend(Settings(cache_dir="")) is None
    assert l2_backend(Settings(cache_dir="none")) is None
    explicit = l2_backend(Settings(cache_url=f"sqlite:///{tmp_path}/other.db"))
    assert isinstance(explicit, SqliteBackend) and explicit.path == str(tmp_path / "other.db")
    redis_backed = l2_backend(Settings(redis_url="redis://127.0.0.1:1/0", cache_dir="x"))
    assert isinstance(redis_backed, RedisBackend)
    with pytest.raises(ConfigError, match="names no file"):
        sqlite_path("sqlite:///")


def test_default_cache_dir_follows_xdg_and_the_none_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VICTOR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert Settings().cache_dir == str(tmp_path / "victor-fleet")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Settings().cache_dir == str(tmp_path / "home" / ".cache" / "victor-fleet")
    monkeypatch.setenv("VICTOR_CACHE_DIR", "none")
    assert Settings().cache_dir == ""


def test_a_value_outlives_the_manager_that_stored_it(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    first = _manager(path)
    key = first.response.key("skill", "1", {"x": 1})
    assert first.response.get_or_compute(key, lambda: {"v": 1}) == {"v": 1}
    first.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    second = _manager(path)
    calls: list[int] = []
    assert second.response.get_or_compute(key, lambda: calls.append(1) or {"v": 2}) == {"v": 1}
    assert calls == [] and second.response.stats()["l2_hits"] == 1
    second.close()


def test_invalidation_reaches_another_connections_l1(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    first, second = _manager(path), _manager(path)
    try:
        key = first.response.key("check_auth", "1", {"x": 1})
        first.response.get_or_compute(key, lambda: {"v": 1})
        assert second.response.get(key) == {"v": 1}  # now in second's L1 too
        result = first.invalidate("response", "*auth*")
        assert result["l2_removed"] == 1 and result["processes_acknowledged"] == 1, result
        assert second.response.l1.get(key) is MISSING
    finally:
        first.close()
        second.close()


def test_rows_are_capped_by_the_cache_size_and_expired_rows_swept(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    manager = _manager(path, response_cache_size=5, embedding_cache_ttl=1)
    try:
        for index in range(100):
            manager.response.set(manager.response.key("s", "1", index), index)
        manager.embedding.set(manager.embedding.key("e", "1", 0), [0.5])
        backend = manager.l2
        assert isinstance(backend, SqliteBackend)
        pattern = f"{manager.keys.prefix}:*:cache:response:*"
        assert backend.count(pattern) <= 5 + 32  # trimmed every 32 writes
        time.sleep(1.1)
        result = manager.clear_expired(broadcast=False)
        assert result["l2_removed"] >= 1
        assert backend.count(pattern) == 5
        assert backend.count(f"{manager.keys.prefix}:*:cache:embedding:*") == 0
        newest = manager.response.key("s", "1", 99)
        manager.response.l1.clear()
        assert manager.response.get(newest) == 99  # the newest rows are the ones kept
    finally:
        manager.close()


def test_locks_expire_and_only_their_owner_releases_them(tmp_path: Path) -> None:
    one = SqliteBackend(str(tmp_path / FILE_NAME))
    two = SqliteBackend(str(tmp_path / FILE_NAME))
    assert one.acquire("k:lock", "a", 0.3)
    assert not two.acquire("k:lock", "b", 0.3)
    two.release("k:lock", "b")  # not its lock: stays
    assert not two.acquire("k:lock", "b", 0.3)
    time.sleep(0.35)
    assert two.acquire("k:lock", "b", 5)
    one.close()
    two.close()


def test_a_damaged_file_degrades_to_l1(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_bytes(b"this is not a database" * 100)
    manager = CacheManager(Settings(cache_dir=str(tmp_path)))
    try:
        key = manager.response.key("s", "1", 1)
        calls: list[int] = []
        for _ in range(2):
            assert manager.response.get_or_compute(key, lambda: calls.append(1) or 7) == 7
        stats = manager.stats()
        assert calls == [1] and stats["errors"] >= 1 and stats["l2"] == "down"
    finally:
        manager.close()


_WRITER = """
import sys
from workers.cache.sqlite import SqliteBackend
backend = SqliteBackend(sys.argv[1], lambda bucket: 150)
for index in range(400):
    key = f"v:t:cache:response:s:1:{sys.argv[2]}-{index}"
    backend.set(key, b"x" * 200, 60)
    # The value, or nothing: the other writers can trim it (150 rows kept) before this reads.
    assert backend.get(key) in (b"x" * 200, None)
    backend.acquire(f"shared:{index % 7}:lock", sys.argv[2], 0.05)
print("ok")
"""


def test_concurrent_processes_share_the_file_without_corrupting_it(tmp_path: Path) -> None:
    path = str(tmp_path / FILE_NAME)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, path, name],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b", "c")
    ]
    outputs = [writer.communicate(timeout=60)[0] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0, 0]
    assert outputs == ["ok\n"] * 3
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = connection.execute("SELECT count(*) FROM entries").fetchone()[0]
    connection.close()
    assert 150 <= rows <= 150 + 3 * 32


def _write_tree(root: Path, files: int) -> None:
    body = "".join(
        f"def function_{n}(value):\n    # TODO: check {n}\n    if value > {n}:\n"
        f"        return value - {n}\n    for item in range(value):\n"
        f"        if item % 3 == 0:\n            value += item\n    return value\n\n"
        for n in range(12)
    )
    for index in range(files):
        package = root / f"pkg{index % 5}"
        package.mkdir(exist_ok=True)
        (package / f"module_{index}.py").write_text(f'"""Module {index}."""\n\n{body}')


def _victor(env: dict[str, str], *args: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    done = subprocess.run(
        [VICTOR, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-2000:]
    return elapsed, json.loads(done.stdout)


@pytest.mark.integration
def test_a_second_analyze_in_a_new_process_is_served_from_the_file(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    files = 120
    _write_tree(tree, files)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("VICTOR_") or key == "VICTOR_CACHE_DIR"
    }
    env["VICTOR_CACHE_DIR"] = str(tmp_path / "cache")
    env["VICTOR_KEY_PREFIX"] = "vsqlite"
    first_s, first = _victor(env, "analyze", str(tree), "--json")
    second_s, second = _victor(env, "analyze", str(tree), "--json")
    assert second == first and first["totals"]["files"] == files
    _, stats = _victor(env, "cache", "stats", "--json")
    response = stats["caches"]["response"]
    # Two runs published their figures: the first computed every file, the second none.
    assert stats["processes"] >= 2, stats
    assert response["computations"] == files and response["l2_hits"] == files, response
    assert second_s < first_s, (first_s, second_s)

    (tree / "pkg0" / "module_0.py").write_text("def only():\n    return 1\n")
    _, third = _victor(env, "analyze", str(tree), "--json")
    assert third["totals"]["functions"] == first["totals"]["functions"] - 12 + 1
    _, stats = _victor(env, "cache", "stats", "--json")
    assert stats["caches"]["response"]["computations"] == files + 1  # only the edited file


def test_opening_the_file_drops_expired_rows(tmp_path: Path) -> None:
    path = str(tmp_path / FILE_NAME)
    first = SqliteBackend(path)
    first.set("v:t:cache:response:s:1:old", b"x", 0.05)
    first.set("v:cache:stats:some-process", b"{}", 0.05)
    first.set("v:t:cache:response:s:1:new", b"y", 60)
    first.close()
    time.sleep(0.1)
    second = SqliteBackend(path)
    assert second.count("*") == 1  # opening swept; count() also skips expired rows
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT count(*) FROM entries").fetchone()[0] == 1
    connection.close()
    second.close()
