"""Single-flight leases: renewed while the owner lives, lapsing soon after it dies.

Each test gets a fresh renewer; "death" is ``renewer.stop()`` (no more renewals, no release),
or a real ``kill -9`` of a process that holds the lock (Redis).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, settings_env
from tests.reliability.conftest import FAULT_TIMEOUTS
from workers.cache import CacheManager, MemoryBackend, RedisBackend
from workers.cache import lease as lease_module
from workers.cache.lease import LeaseRenewer, lease_renewer
from workers.cache.sqlite import SqliteBackend
from workers.core.errors import ConfigError
from workers.core.settings import PROFILES, Settings

LEASE_S = 0.5


@pytest.fixture(autouse=True)
def renewer(monkeypatch: pytest.MonkeyPatch) -> Iterator[LeaseRenewer]:
    """A fresh renewer for this test (the process's one may be stopped by a test)."""
    fresh = LeaseRenewer()
    monkeypatch.setattr(lease_module, "_renewer", fresh)
    yield fresh
    fresh.stop()


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        made: Any = MemoryBackend()
    elif request.param == "sqlite":
        made = SqliteBackend(str(tmp_path / "cache.sqlite3"))
    else:
        made = RedisBackend(request.getfixturevalue("redis_url"))
    yield made
    made.close()


@pytest.fixture
def make_manager(
    request: pytest.FixtureRequest, backend: Any
) -> Iterator[Callable[..., CacheManager]]:
    """Managers (one per simulated process) sharing ``backend``, with short leases."""
    base: dict[str, Any] = {"cache_single_flight_lease_s": LEASE_S}
    if isinstance(backend, RedisBackend):
        base |= {"redis_url": backend.url, "key_prefix": request.getfixturevalue("key_prefix")}
    managers: list[CacheManager] = []

    def build(**overrides: Any) -> CacheManager:
        manager = CacheManager(Settings(**{**base, **overrides}), backend).start()
        managers.append(manager)
        return manager

    yield build
    for manager in managers:
        manager.close()


class Owner:
    """A thread that computes one key through ``manager`` and holds it until ``finish()``."""

    def __init__(self, manager: CacheManager, key: str, then: Callable[[], None] = lambda: None):
        self.manager, self.key = manager, key
        self.computing, self._finish = threading.Event(), threading.Event()
        self._then = then
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.computing.wait(5), "the owner never started computing"

    def _compute(self) -> dict[str, str]:
        self._then()
        self.computing.set()
        self._finish.wait(30)
        return {"by": "owner"}

    def _run(self) -> None:
        self.manager.response.get_or_compute(self.key, self._compute)

    def finish(self) -> None:
        self._finish.set()
        self.thread.join(10)


def locked(manager: CacheManager, key: str) -> bool:
    assert manager.l2 is not None
    return manager.l2.get_and_check_lock(key, manager.keys.cache_lock(key))[1]


def test_a_lease_is_renewed_while_its_owner_lives(
    make_manager: Callable[..., CacheManager], renewer: LeaseRenewer
) -> None:
    owner_side = make_manager()
    key = owner_side.response.key("slow", "1", {"lease": "renewed"})
    owner = Owner(owner_side, key)
    time.sleep(3.5 * LEASE_S)
    assert locked(owner_side, key), "the lock lapsed although its owner lives"
    assert renewer.held() == 1
    owner.finish()
    assert not locked(owner_side, key), "the owner released its lock"
    assert renewer.held() == 0 and renewer.lost == 0


def test_a_waiter_keeps_waiting_for_a_live_owner_and_gets_its_value(
    make_manager: Callable[..., CacheManager],
) -> None:
    owner_side, waiter_side = make_manager(), make_manager(cache_single_flight_timeout_s=10)
    key = owner_side.response.key("slow", "1", {"lease": "live"})
    owner = Owner(owner_side, key)
    threading.Timer(4 * LEASE_S, owner.finish).start()
    started = time.monotonic()
    value = waiter_side.response.get_or_compute(key, lambda: {"by": "waiter"})
    assert value == {"by": "owner"}
    assert 3 * LEASE_S < time.monotonic() - started < 4 * LEASE_S + 1.5
    stats = waiter_side.response.stats()
    assert (stats["waits"], stats["computations"], stats["wait_timeouts"]) == (1, 0, 0)


def test_a_dead_owners_lease_lapses_within_the_lease(
    make_manager: Callable[..., CacheManager], renewer: LeaseRenewer
) -> None:
    owner_side = make_manager()
    key = owner_side.response.key("slow", "1", {"lease": "lapses"})
    owner = Owner(owner_side, key)
    time.sleep(2 * LEASE_S)  # renewed at least once
    died_at = time.monotonic()
    renewer.stop()  # dies: no more renewals, and no release
    while locked(owner_side, key) and time.monotonic() - died_at < 5:
        time.sleep(0.01)
    lapsed_after = time.monotonic() - died_at
    assert lapsed_after <= LEASE_S + 0.3, lapsed_after
    owner.finish()


def test_a_waiter_computes_soon_after_the_owner_dies_not_after_the_timeout(
    make_manager: Callable[..., CacheManager], renewer: LeaseRenewer
) -> None:
    owner_side, waiter_side = make_manager(), make_manager()
    assert waiter_side.settings.cache_single_flight_timeout_s == 30.0  # the default
    key = owner_side.response.key("slow", "1", {"lease": "dead"})
    owner = Owner(owner_side, key, then=renewer.stop)  # dies as soon as it holds the lock
    started = time.monotonic()
    value = waiter_side.response.get_or_compute(key, lambda: {"by": "waiter"})
    waited = time.monotonic() - started
    assert value == {"by": "waiter"}
    assert waited <= LEASE_S + 0.5, waited
    stats = waiter_side.response.stats()
    assert (stats["waits"], stats["computations"], stats["wait_timeouts"]) == (1, 1, 0)
    owner.finish()


def test_a_renewal_never_brings_back_a_released_or_foreign_lock(backend: Any) -> None:
    lock = f"lease-test:{os.getpid()}:{time.monotonic_ns()}:lock"
    assert backend.acquire(lock, "mine", 5)
    assert backend.renew(lock, "mine", 5)
    assert not backend.renew(lock, "theirs", 5)
    backend.release(lock, "mine")
    assert not backend.renew(lock, "mine", 5)
    assert not backend.get_and_check_lock("no-value", lock)[1]
    assert backend.acquire(lock, "theirs", 5)
    backend.release(lock, "theirs")


def _report_renewer(pipe: Any, parent_renewer_id: int) -> None:
    ours = lease_renewer()
    pipe.send((id(ours) != parent_renewer_id, ours.held(), ours._thread is None))


def test_a_forked_child_holds_none_of_its_parents_leases(renewer: LeaseRenewer) -> None:
    backend = MemoryBackend()
    backend.acquire("k:lock", "parent", 5)
    renewer.hold(backend, "k:lock", "parent", 5)  # the parent's renewer thread is running
    fork = multiprocessing.get_context("fork")
    receiver, sender = fork.Pipe(duplex=False)
    child = fork.Process(target=_report_renewer, args=(sender, id(renewer)))
    child.start()
    assert receiver.poll(10)
    assert receiver.recv() == (True, 0, True)  # a new renewer: no leases, no thread yet
    child.join(10)


_HOLDER = """
import sys, time
from workers.cache import CacheManager
from workers.core.settings import load_settings

manager = CacheManager(load_settings()).start()
key = manager.response.key("slow", "1", {"lease": sys.argv[1]})

def compute():
    print("holding", flush=True)
    time.sleep(60)

manager.response.get_or_compute(key, compute)
"""


@pytest.mark.redis
def test_a_killed_process_lock_lapses_and_the_waiter_computes(
    redis_settings: Callable[..., Settings],
) -> None:
    settings = redis_settings(cache_single_flight_lease_s=1.0)
    assert settings.cache_single_flight_timeout_s == 9.0  # half the fixture's 18 s soft limit
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, "killed"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **settings_env(settings)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        manager = CacheManager(settings).start()
        key = manager.response.key("slow", "1", {"lease": "killed"})
        time.sleep(1.5)  # past the first lease: the holder renewed it
        assert locked(manager, key)
        os.kill(holder.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        value = manager.response.get_or_compute(key, lambda: {"by": "waiter"})
        recovered = time.monotonic() - killed_at
        manager.close()
    finally:
        holder.kill()
        holder.wait(10)
    assert value == {"by": "waiter"}
    assert recovered <= 1.0 + 1.0, recovered


# --- the ordering of the settings -----------------------------------------------------------


def test_single_flight_times_must_be_ordered_and_the_error_names_the_env_vars() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(task_soft_time_limit_s=15, cache_single_flight_timeout_s=30)
    message = str(caught.value)
    assert (
        "cache_single_flight_lease_s < cache_single_flight_timeout_s < task_soft_time_limit_s"
        in message
    )
    for env in (
        "VICTOR_CACHE_SINGLE_FLIGHT_LEASE_S",
        "VICTOR_CACHE_SINGLE_FLIGHT_TIMEOUT_S",
        "VICTOR_TASK_SOFT_TIME_LIMIT_S",
    ):
        assert env in message
    with pytest.raises(ConfigError, match=r"got 30\.0 < 30\.0 < 270"):
        Settings(cache_single_flight_lease_s=30)
    with pytest.raises(ConfigError, match="VICTOR_CACHE_SINGLE_FLIGHT_LEASE_S"):
        Settings(cache_single_flight_lease_s=0)


def test_unset_single_flight_times_shrink_to_fit_a_short_soft_time_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VICTOR_TASK_SOFT_TIME_LIMIT_S", "15")  # the user's configuration
    settings = Settings(task_time_limit_s=20, visibility_timeout_s=30, reconciler_stale_after_s=45)
    assert (settings.cache_single_flight_lease_s, settings.cache_single_flight_timeout_s) == (
        2.5,
        7.5,
    )
    explicit = Settings(task_time_limit_s=20, cache_single_flight_timeout_s=12)
    assert explicit.cache_single_flight_timeout_s == 12 and explicit.task_soft_time_limit_s == 15


@pytest.mark.parametrize("profile", list(PROFILES))
def test_defaults_and_profiles_keep_the_single_flight_order(profile: str) -> None:
    settings = Settings(profile=profile)
    assert (settings.cache_single_flight_lease_s, settings.cache_single_flight_timeout_s) == (
        3.0,
        30.0,
    )
    assert settings.cache_single_flight_timeout_s < settings.task_soft_time_limit_s


def test_the_fault_tests_short_timeouts_still_validate() -> None:
    settings = Settings(**FAULT_TIMEOUTS)
    lease, wait = settings.cache_single_flight_lease_s, settings.cache_single_flight_timeout_s
    assert lease < wait < settings.task_soft_time_limit_s
