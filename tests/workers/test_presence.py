"""Presence and holdings: the heartbeat settings, the holdings tracker, the heartbeat in Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from workers.core.errors import ConfigError
from workers.core.keys import Keys
from workers.core.names import BATCH_TASK, REDUCE_TASK
from workers.core.settings import Settings
from workers.maintenance.holdings import (
    HoldingsTracker,
    claim_holdings,
    dead_incarnations,
    return_holdings,
)
from workers.maintenance.presence import Presence, live_workers


@dataclass
class FakeMessage:
    delivery_tag: str
    acknowledged: bool = False


@dataclass
class FakeRequest:
    id: str
    name: str = BATCH_TASK
    kwargs: dict[str, Any] = field(default_factory=lambda: {"job_id": "j"})
    message: FakeMessage = field(default_factory=lambda: FakeMessage("tag"))


def request(task_id: str, tag: str, **overrides: Any) -> FakeRequest:
    return FakeRequest(id=task_id, message=FakeMessage(tag), **overrides)


# --- settings ----------------------------------------------------------------------------------


def test_heartbeat_defaults_are_two_and_six_seconds() -> None:
    settings = Settings()
    assert (settings.worker_heartbeat_interval_s, settings.worker_heartbeat_ttl_s) == (2.0, 6.0)


def test_heartbeat_settings_read_their_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_WORKER_HEARTBEAT_INTERVAL_S", "0.5")
    monkeypatch.setenv("VICTOR_WORKER_HEARTBEAT_TTL_S", "1.5")
    settings = Settings()
    assert (settings.worker_heartbeat_interval_s, settings.worker_heartbeat_ttl_s) == (0.5, 1.5)


@pytest.mark.parametrize("interval_s, ttl_s", [(2, 3), (5, 6), (4, 4)])
def test_heartbeat_ttl_must_cover_two_beats(interval_s: float, ttl_s: float) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(worker_heartbeat_interval_s=interval_s, worker_heartbeat_ttl_s=ttl_s)
    message = str(caught.value)
    assert "2 x worker_heartbeat_interval_s <= worker_heartbeat_ttl_s" in message
    assert "VICTOR_WORKER_HEARTBEAT_TTL_S" in message


def test_assigning_a_heartbeat_that_breaks_the_ordering_is_refused() -> None:
    settings = Settings()
    with pytest.raises(ConfigError, match="worker_heartbeat"):
        settings.worker_heartbeat_interval_s = 4


# --- the tracker (no Redis) --------------------------------------------------------------------


def test_tracker_records_only_ledger_tasks() -> None:
    tracker = HoldingsTracker()
    assert tracker.received(request("j.0", "t0"))
    assert tracker.received(request("j.reduce", "t1", name=REDUCE_TASK))
    assert not tracker.received(request("x", "t2", name="victor.skill.noop"))
    assert not tracker.received(request("y", "t3", kwargs={}))
    assert tracker.changes() == ({"t0": "j|j.0", "t1": "j|j.reduce"}, [])


def test_tracker_removes_a_message_once_it_is_acknowledged() -> None:
    tracker = HoldingsTracker()
    first, second = request("j.0", "t0"), request("j.1", "t1")
    tracker.received(first)
    tracker.received(second)
    added, removed = tracker.changes()
    tracker.written(added, removed)
    assert tracker.changes() == ({}, [])
    first.message.acknowledged = True
    assert tracker.changes() == ({}, ["t0"])
    assert tracker.held_count() == 1


def test_a_message_acked_before_it_was_written_is_never_written() -> None:
    tracker = HoldingsTracker()
    done = request("j.0", "t0")
    tracker.received(done)
    done.message.acknowledged = True
    assert tracker.changes() == ({}, [])


def test_a_failed_write_is_written_again() -> None:
    tracker = HoldingsTracker()
    held = request("j.0", "t0")
    tracker.received(held)
    assert tracker.changes() == ({"t0": "j|j.0"}, [])  # the write fails: no written()
    assert tracker.changes() == ({"t0": "j|j.0"}, [])
    held.message.acknowledged = True
    assert tracker.changes() == ({}, [])


# --- the heartbeat in Redis --------------------------------------------------------------------


@pytest.fixture
def presence_factory(
    redis_settings: Callable[..., Settings],
) -> Any:
    started: list[Presence] = []

    def build(hostname: str = "w1@h", **overrides: Any) -> Presence:
        presence = Presence(redis_settings(**overrides), hostname)
        started.append(presence)
        return presence

    yield build
    for presence in started:
        presence._stop.set()


@pytest.mark.redis
def test_heartbeat_publishes_the_roots_and_lapses(presence_factory: Any, tmp_path: Path) -> None:
    presence = presence_factory(allowed_roots=[tmp_path / "." / "code"])
    presence.write(beat=True)
    keys, client = presence.keys, presence.client
    ttl_ms = client.pttl(keys.worker_ready("w1@h"))
    assert 0 < ttl_ms <= 6000
    (worker,) = live_workers(client, keys)
    assert worker.hostname == "w1@h" and worker.incarnation == presence.incarnation
    assert worker.roots == (str((tmp_path / "code").resolve()),)
    assert dead_incarnations(client, keys) == []
    client.delete(keys.worker_ready("w1@h"))  # the TTL lapses
    assert dead_incarnations(client, keys) == [(presence.incarnation, "w1@h")]
    assert live_workers(client, keys) == []


@pytest.mark.redis
def test_holdings_are_written_in_one_round_and_cleared_at_shutdown(presence_factory: Any) -> None:
    presence = presence_factory()
    presence.write(beat=True)
    held = [request(f"j.{index}", f"t{index}") for index in range(3)]
    for one in held:
        presence.received(one)
    presence.write(beat=False)
    client = presence.client
    assert client.hgetall(presence.holdings_key) == {
        b"t0": b"j|j.0",
        b"t1": b"j|j.1",
        b"t2": b"j|j.2",
    }
    assert 0 < client.ttl(presence.holdings_key) <= presence.settings.visibility_timeout_s
    held[1].message.acknowledged = True
    presence.write(beat=False)
    assert sorted(client.hkeys(presence.holdings_key)) == [b"t0", b"t2"]
    presence.stop()
    keys = presence.keys
    assert not client.exists(keys.worker_ready("w1@h"), presence.holdings_key)
    assert not client.hexists(keys.worker_index(), presence.incarnation)


@pytest.mark.redis
def test_stopping_an_old_incarnation_keeps_the_new_ones_heartbeat(presence_factory: Any) -> None:
    old, new = presence_factory(), presence_factory()
    old.write(beat=True)
    new.write(beat=True)  # the same hostname, started again
    client, keys = new.client, new.keys
    assert dead_incarnations(client, keys) == [(old.incarnation, "w1@h")]
    old.stop()
    beat = json.loads(client.get(keys.worker_ready("w1@h")))
    assert beat["incarnation"] == new.incarnation


@pytest.mark.redis
def test_a_ready_flag_from_elsewhere_is_not_a_victor_worker(
    presence_factory: Any, redis_url: str
) -> None:
    presence = presence_factory()
    presence.write(beat=True)
    keys: Keys = presence.keys
    client = redis.Redis.from_url(redis_url)
    client.set(keys.worker_ready("w1@h"), "1")
    assert live_workers(client, keys) == []
    client.close()


@pytest.mark.redis
def test_claimed_holdings_given_back_are_claimed_again(presence_factory: Any) -> None:
    presence = presence_factory()
    presence.write(beat=True)
    presence.received(request("j.0", "t0"))
    presence.write(beat=False)
    client, keys = presence.client, presence.keys
    client.delete(keys.worker_ready("w1@h"))
    claimed = claim_holdings(client, keys, "w1@h", presence.incarnation)
    assert [task.task_id for task in claimed or []] == ["j.0"]
    assert dead_incarnations(client, keys) == []
    return_holdings(client, keys, "w1@h", presence.incarnation, claimed or [])
    assert dead_incarnations(client, keys) == [(presence.incarnation, "w1@h")]
    assert claim_holdings(client, keys, "w1@h", presence.incarnation) == claimed
