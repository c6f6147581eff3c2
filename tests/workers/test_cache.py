"""The multi-level cache in one process: contract over both L2 backends, bounds, TTL, keys."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from workers.cache import MISSING, CacheManager, LRUStore, MemoryBackend, RedisBackend
from workers.cache.envelope import Signer, seal, unseal
from workers.cache.keying import canonical, digest, tenant_scope
from workers.cache.sqlite import SqliteBackend
from workers.core.settings import Settings
from workers.runtime import Runtime
from workers.skills.registry import load_registry


class Counter:
    """A compute function that counts its calls."""

    def __init__(self, value: Any = None) -> None:
        self.calls = 0
        self.value = value

    def __call__(self) -> Any:
        self.calls += 1
        return self.value if self.value is not None else {"n": self.calls}


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def make_manager(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., CacheManager]]:
    """Managers sharing one L2 of the parametrized kind (each manager = one process's L1)."""
    base: dict[str, Any] = {}
    if request.param == "memory":
        backend: Any = MemoryBackend()
    elif request.param == "sqlite":
        backend = SqliteBackend(str(tmp_path / "cache.sqlite3"))
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("key_prefix")
        backend = RedisBackend(url)
        base = {"redis_url": url, "key_prefix": prefix}
    managers: list[CacheManager] = []

    def build(**overrides: Any) -> CacheManager:
        manager = CacheManager(Settings(**{**base, **overrides}), backend).start()
        managers.append(manager)
        return manager

    yield build
    for manager in managers:
        manager.close()
    backend.close()


def test_a_miss_computes_once_then_l1_then_l2_serve(make_manager) -> None:
    first, second = make_manager(), make_manager()
    key = first.response.key("skill", "1", {"x": 1})
    compute = Counter()
    assert first.response.get_or_compute(key, compute) == {"n": 1}
    assert first.response.get_or_compute(key, compute) == {"n": 1}
    assert second.response.get_or_compute(key, compute) == {"n": 1}
    assert compute.calls == 1
    one, two = first.response.stats(), second.response.stats()
    assert (one["l1_hits"], one["misses"], one["computations"]) == (1, 1, 1)
    assert (two["l1_hits"], two["l2_hits"], two["computations"]) == (0, 1, 0)
    assert two["hit_rate"] == 1.0 and one["hit_rate"] == 0.5


def test_invalidation_by_pattern_reaches_l2_and_every_l1(make_manager) -> None:
    first, second = make_manager(), make_manager()
    auth = first.response.key("check_auth", "1", {"x": 1})
    other = first.response.key("read_file", "1", {"x": 1})
    for key in (auth, other):
        first.response.get_or_compute(key, Counter())
        second.response.get_or_compute(key, Counter())
    result = first.invalidate("response", "*auth*")
    assert result["l2_removed"] == 1
    assert result["l1_removed"] == 1
    deadline = time.monotonic() + 5
    while second.response.l1.get(auth) is not MISSING and time.monotonic() < deadline:
        time.sleep(0.01)
    assert second.response.l1.get(auth) is MISSING
    assert second.response.l1.get(other) is not MISSING
    compute = Counter()
    second.response.get_or_compute(auth, compute)
    assert compute.calls == 1


def test_a_tampered_l2_value_is_discarded_and_recomputed(make_manager) -> None:
    writer, reader = make_manager(), make_manager()
    key = writer.response.key("skill", "1", {"x": 1})
    writer.response.get_or_compute(key, Counter({"secret": "real"}))
    raw = writer.l2.get(key)
    assert raw is not None and b"real" in raw
    writer.l2.set(key, raw.replace(b"real", b"fake"), 60)
    compute = Counter({"secret": "recomputed"})
    assert reader.response.get_or_compute(key, compute) == {"secret": "recomputed"}
    assert compute.calls == 1
    assert reader.response.stats()["rejected"] == 1


def test_a_tenants_entry_is_not_served_to_another_tenant(make_manager) -> None:
    manager = make_manager()
    with tenant_scope("alpha"):
        alpha_key = manager.response.key("skill", "1", {"q": "same"})
        manager.response.get_or_compute(alpha_key, Counter({"owner": "alpha"}))
    with tenant_scope("beta"):
        beta_key = manager.response.key("skill", "1", {"q": "same"})
    assert alpha_key != beta_key and ":alpha:" in alpha_key and ":beta:" in beta_key
    # Even alpha's sealed bytes copied under beta's key are refused: the MAC names the key.
    manager.l2.set(beta_key, manager.l2.get(alpha_key), 60)
    other = make_manager()
    compute = Counter({"owner": "beta"})
    assert other.response.get_or_compute(beta_key, compute) == {"owner": "beta"}
    assert compute.calls == 1


def test_l2_values_expire_with_the_cache_ttl(make_manager) -> None:
    writer = make_manager(response_cache_ttl=1)
    key = writer.response.key("skill", "1", {"x": 1})
    writer.response.get_or_compute(key, Counter())
    time.sleep(1.2)
    reader = make_manager(response_cache_ttl=1)
    assert reader.response.get(key) is MISSING
    assert writer.response.l1.get(key) is MISSING


def test_a_foreign_hmac_key_is_not_trusted(make_manager) -> None:
    ours = make_manager(cache_hmac_key="ours")
    theirs = make_manager(cache_hmac_key="theirs")
    key = ours.response.key("skill", "1", {"x": 1})
    ours.response.get_or_compute(key, Counter({"v": 1}))
    compute = Counter({"v": 2})
    assert theirs.response.get_or_compute(key, compute) == {"v": 2}
    assert compute.calls == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lru_evicts_the_least_recently_used_entry_and_counts_it() -> None:
    store = LRUStore(max_entries=3, max_bytes=10_000)
    for name in "abc":
        store.put(name, name, 10, 60)
    assert store.get("a") == "a"  # a is now the most recent
    store.put("d", "d", 10, 60)
    assert store.get("b") is MISSING
    assert [store.get(name) for name in "acd"] == ["a", "c", "d"]
    assert store.evictions == 1 and len(store) == 3


def test_lru_is_bounded_by_bytes() -> None:
    store = LRUStore(max_entries=100, max_bytes=100)
    for index in range(10):
        store.put(str(index), index, 30, 60)
    assert store.bytes <= 100 and len(store) == 3
    assert store.evictions == 7
    assert store.put("huge", "x", 101, 60) is False


def test_a_hit_does_not_extend_the_ttl() -> None:
    clock = FakeClock()
    store = LRUStore(max_entries=10, max_bytes=10_000, clock=clock)
    store.put("k", "v", 1, ttl_s=10)
    for _ in range(9):
        clock.now += 1
        assert store.get("k") == "v"
    clock.now += 1.01
    assert store.get("k") is MISSING
    assert store.expirations == 1


def test_clear_expired_drops_only_expired_entries() -> None:
    clock = FakeClock()
    store = LRUStore(max_entries=10, max_bytes=10_000, clock=clock)
    store.put("short", 1, 1, ttl_s=1)
    store.put("long", 2, 1, ttl_s=100)
    clock.now += 2
    assert store.clear_expired() == 1
    assert len(store) == 1 and store.bytes == 1


def test_auto_invalidate_sweeps_expired_entries_without_lookups() -> None:
    settings = Settings(
        response_cache_ttl=1, cache_auto_invalidate=True, cache_auto_invalidate_interval=1
    )
    manager = CacheManager(settings, None).start()
    try:
        manager.response.get_or_compute(manager.response.key("s", "1", 1), Counter())
        assert len(manager.response.l1) == 1
        deadline = time.monotonic() + 5
        while len(manager.response.l1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(manager.response.l1) == 0
    finally:
        manager.close()


def test_without_auto_invalidate_expired_entries_stay_until_looked_up() -> None:
    settings = Settings(
        response_cache_ttl=1, cache_auto_invalidate=False, cache_auto_invalidate_interval=1
    )
    manager = CacheManager(settings, None).start()
    try:
        manager.response.get_or_compute(manager.response.key("s", "1", 1), Counter())
        time.sleep(2.5)
        assert len(manager.response.l1) == 1
        assert manager.clear_expired()["l1_removed"] == 1
    finally:
        manager.close()


def test_size_setting_bounds_each_cache() -> None:
    manager = CacheManager(Settings(tool_selection_cache_size=5, response_cache_size=7), None)
    for index in range(20):
        manager.tool_selection.set(manager.tool_selection.key("query", "1", index), index)
        manager.response.set(manager.response.key("s", "1", index), index)
    stats = manager.stats()["caches"]
    assert stats["tool_selection"]["current_size"] == 5
    assert stats["tool_selection"]["evictions"] == 15
    assert stats["response"]["current_size"] == 7 and stats["response"]["max_size"] == 7


def test_a_disabled_cache_computes_every_time() -> None:
    manager = CacheManager(Settings(response_cache_enabled=False), None)
    compute = Counter()
    key = manager.response.key("s", "1", 1)
    manager.response.get_or_compute(key, compute)
    manager.response.get_or_compute(key, compute)
    assert compute.calls == 2 and manager.response.stats()["bypassed"] == 2


def test_keys_carry_a_digest_never_the_raw_input() -> None:
    manager = CacheManager(Settings(key_prefix="vk"), None)
    key = manager.response.key("read_file", "3", {"path": "/etc/passwd:evil*"})
    prefix, tenant, word, cache, skill, version, hexdigest = key.split(":")
    assert (prefix, tenant, word, cache, skill, version) == (
        "vk",
        "default",
        "cache",
        "response",
        "read_file",
        "3",
    )
    assert hexdigest == digest({"path": "/etc/passwd:evil*"}) and len(hexdigest) == 64
    assert digest(["a", 'b"c']) == digest(["a", 'b"c']) and canonical(["a", "é"]) == (
        '["a","é"]'.encode()
    )


def test_envelope_round_trip_and_key_binding() -> None:
    signer = Signer(b"k")
    raw = seal(signer, "key:a", b'{"x":[1,2]}', time.time() + 60)
    unsealed = unseal(signer, "key:a", raw)
    assert unsealed is not None and unsealed.data == {"x": [1, 2]}
    assert unseal(signer, "key:b", raw) is None
    assert unseal(Signer(b"other"), "key:a", raw) is None
    assert unseal(signer, "key:a", b'{"v":2}') is None


def test_signer_is_hmac_sha256() -> None:
    import hmac

    for secret in (b"k", b"x" * 64, b"y" * 100):
        body = b'{"key":"a","exp":1.0,"data":null}'
        expected = hmac.new(secret, body, "sha256").hexdigest().encode()
        assert Signer(secret).mac(body) == expected


def test_redis_unreachable_falls_back_to_l1_and_counts_errors() -> None:
    from orchestrator.harness import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    manager = CacheManager(Settings(redis_url=url, key_prefix="vdown"), RedisBackend(url))
    compute = Counter()
    key = manager.response.key("s", "1", 1)
    assert manager.response.get_or_compute(key, compute) == {"n": 1}
    assert manager.response.get_or_compute(key, compute) == {"n": 1}
    stats = manager.stats()
    assert compute.calls == 1 and stats["errors"] >= 1 and stats["l2"] == "down"


def test_analyze_result_is_cached_until_the_file_changes(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f(x):\n    return x\n")
    runtime = Runtime(Settings(allowed_roots=[tmp_path]), load_registry())
    first = runtime.executor.run("analyze_code", {"path": str(source)})
    again = runtime.executor.run("analyze_code", {"path": str(source)})
    assert again == first
    source.write_text("def f(x):\n    return x\n\ndef g(y):\n    return y\n")
    edited = runtime.executor.run("analyze_code", {"path": str(source)})
    assert len(edited["functions"]) == 2
    stats = runtime.cache().response.stats()
    assert (stats["computations"], stats["l1_hits"]) == (2, 1)


def test_a_relative_path_is_keyed_on_the_file_under_the_allowed_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The guide's {"file": "main.py"}: the skill reads it under the first allowed root, and the
    # key must fingerprint that file, not a main.py in the working directory.
    root, elsewhere = tmp_path / "root", tmp_path / "cwd"
    root.mkdir()
    elsewhere.mkdir()
    (elsewhere / "main.py").write_text("# not the file the skill reads\n")
    monkeypatch.chdir(elsewhere)
    (root / "main.py").write_text("def f(x):\n    return x\n")
    runtime = Runtime(Settings(allowed_roots=[root]), load_registry())
    first = runtime.executor.run("analyze_code", {"file": "main.py"})
    assert runtime.executor.run("analyze_code", {"file": "main.py"}) == first
    (root / "main.py").write_text("def f(x):\n    return x\n\ndef g(y):\n    return y\n")
    edited = runtime.executor.run("analyze_code", {"file": "main.py"})
    assert [function[0] for function in edited["functions"]] == ["f", "g"]
    stats = runtime.cache().response.stats()
    assert (stats["computations"], stats["l1_hits"]) == (2, 1)


def test_select_tools_namespaces_follow_their_switches() -> None:
    settings = Settings(tool_selection_cache_query=False)
    runtime = Runtime(settings, load_registry())
    params = {"query": "analyze code complexity " + uuid.uuid4().hex}
    first = runtime.executor.run("select_tools", params)
    assert runtime.executor.run("select_tools", params) == first
    assert first["tools"][0][0] == "analyze_code"
    spaces = runtime.cache().tool_selection.stats()["namespaces"]
    assert spaces["query"]["bypassed"] == 2
    # rl holds two per-skill tables: the BM25 index and the outcome weights.
    assert (spaces["rl"]["computations"], spaces["rl"]["l1_hits"]) == (2, 2)
    settings.tool_selection_cache_query = True
    runtime.executor.run("select_tools", params)
    runtime.executor.run("select_tools", params)
    runtime.executor.run("select_tools", {**params, "context": "in the auth module"})
    spaces = runtime.cache().tool_selection.stats()["namespaces"]
    assert (spaces["query"]["computations"], spaces["query"]["l1_hits"]) == (1, 1)
    assert spaces["context"]["computations"] == 1


@pytest.mark.redis
def test_redis_keys_use_scan_not_keys(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    backend = RedisBackend(redis_url)
    for index in range(1200):
        client.set(f"{key_prefix}:t:cache:response:s:1:{index}", b"x", ex=60)
    before = client.info("commandstats").get("cmdstat_keys", {}).get("calls", 0)
    assert backend.delete_matching(f"{key_prefix}:*:cache:response:*") == 1200
    assert client.info("commandstats").get("cmdstat_keys", {}).get("calls", 0) == before
    client.close()


def test_a_tenant_name_unsafe_in_a_key_gets_a_hashed_part_no_valid_name_can_take() -> None:
    from workers.cache.keying import safe_tenant

    manager = CacheManager(Settings(), None)
    with tenant_scope("acme corp:*"):
        key = manager.response.key("s", "1", 1)
    part = key.split(":")[1]
    assert part == safe_tenant("acme corp:*") and part.startswith("+") and len(part) == 65
    assert safe_tenant("acme") == "acme" and safe_tenant(part) != part


def test_freeze_keeps_the_json_and_shares_pairs() -> None:
    import json

    from workers.cache.compact import freeze

    value = {"tools": [["read_file", 0.5], ["report", 1], ["flag", True]], "n": None}
    frozen = freeze(value)
    assert json.dumps(frozen) == json.dumps(value)
    assert frozen == {"tools": (("read_file", 0.5), ("report", 1), ("flag", True)), "n": None}
    again = freeze(json.loads(json.dumps(value)))
    assert again["tools"][0] is frozen["tools"][0]  # equal pairs are one object
    # 1 == 1.0 == True, but they are different JSON: never shared with each other.
    assert [type(freeze([x])[0]) for x in (1, 1.0, True)] == [int, float, bool]
    assert json.dumps(freeze(["a", 1.0])) == '["a", 1.0]' and freeze(["a", 1]) == ("a", 1)


def test_tool_selection_values_are_frozen_the_same_way_from_l1_and_l2(make_manager) -> None:
    first, second = make_manager(), make_manager()
    key = first.tool_selection.key("query", "1", ["goal"])
    computed = first.tool_selection.get_or_compute(key, lambda: [["a", 1.5], ["b", 0.5]])
    from_l1 = first.tool_selection.get_or_compute(key, lambda: None)
    from_l2 = second.tool_selection.get_or_compute(key, lambda: None)
    assert computed == from_l1 == from_l2 == (("a", 1.5), ("b", 0.5))


def test_a_named_cache_hit_path_expires_and_counts() -> None:
    clock = FakeClock()
    manager = CacheManager(Settings(response_cache_ttl=10), None)
    cache = manager.response
    cache._clock = cache.l1._clock = clock
    key = cache.key("s", "1", 1)
    assert cache.get_or_compute(key, lambda: "v") == "v"
    clock.now += 9
    assert cache.get(key) == "v" and cache.get_or_compute(key, lambda: "w") == "v"
    clock.now += 1.5
    assert cache.get(key) is MISSING
    stats = cache.stats()
    assert (stats["l1_hits"], stats["misses"], stats["expirations"]) == (2, 2, 1)
    assert stats["current_size"] == 0 and stats["bytes"] == 0
