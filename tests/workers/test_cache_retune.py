"""Assignments on a live Settings object retune its caches instead of emptying them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from workers.cache import CacheManager, CacheProvider, LRUStore, cache_manager
from workers.cache.lru import MISSING
from workers.core.settings import Settings


@pytest.fixture
def make_settings() -> Iterator[Callable[..., Settings]]:
    """L1-only settings with a prefix of their own; their managers are closed afterwards."""
    made: list[Settings] = []

    def build(**values: object) -> Settings:
        settings = Settings(cache_dir="", key_prefix=f"retune{uuid.uuid4().hex[:8]}", **values)
        made.append(settings)
        return settings

    yield build
    for settings in made:
        cache_manager(settings).close()


def _warm(manager: CacheManager, count: int = 3) -> list[str]:
    cache = manager.response
    keys = [cache.key("noop", "1", {"value": index}) for index in range(count)]
    for index, key in enumerate(keys):
        cache.set(key, {"value": index})
    return keys


def test_a_warm_entry_survives_growing_the_cache(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(response_cache_size=500)
    manager = cache_manager(settings)
    keys = _warm(manager)

    settings.response_cache_size *= 2
    settings.max_parallel_workers = 8  # a field the caches do not read changes nothing either

    assert cache_manager(settings) is manager
    assert manager.response.get(keys[0]) == {"value": 0}
    stats = manager.stats()["caches"]["response"]
    assert (stats["current_size"], stats["max_size"]) == (3, 1000)


def test_a_new_ttl_applies_to_entries_stored_from_then_on(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(response_cache_ttl=100)
    manager = cache_manager(settings)
    settings.response_cache_ttl *= 1.5
    assert settings.response_cache_ttl == 150
    settings.response_cache_ttl = 101 * 1.5  # 151.5: whole seconds, rounded up
    assert settings.response_cache_ttl == 152
    assert manager.stats()["caches"]["response"]["ttl_s"] == 152


def test_where_the_cache_lives_still_makes_a_new_manager(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    manager = cache_manager(settings)
    settings.key_prefix = f"{settings.key_prefix}b"
    moved = cache_manager(settings)
    try:
        assert moved is not manager and moved.keys.prefix == settings.key_prefix
    finally:
        moved.close()
        manager.close()


def test_equal_settings_share_a_manager_until_one_moves_away_with_its_entries(
    make_settings: Callable[..., Settings],
) -> None:
    first = make_settings(response_cache_size=50)
    second = first.model_copy(deep=True)
    shared = cache_manager(first)
    assert cache_manager(second) is shared
    keys = _warm(shared)
    provider = CacheProvider(second)
    assert provider() is shared

    second.response_cache_size = 2

    own = cache_manager(second)
    try:
        assert own is not shared and own.settings is second
        assert provider() is own
        assert own.response.get(keys[0]) is MISSING  # the oldest went over the new bound
        assert own.response.get(keys[2]) == {"value": 2}
        assert cache_manager(first) is shared and len(shared.response.l1) == 3
    finally:
        own.close()


def test_the_lru_grows_in_place_and_shrinks_by_evicting_the_oldest() -> None:
    bound = {"entries": 3}
    store = LRUStore(lambda: bound["entries"], 1 << 20)
    for index in range(3):
        store.put(f"k{index}", index, 10, 60)
    bound["entries"] = 5
    store.put("k3", 3, 10, 60)
    assert len(store) == 4 and store.evictions == 0
    bound["entries"] = 2
    assert store.fit() == 2
    assert list(store.keys()) == ["k2", "k3"] and store.evictions == 2


def test_copy_from_keeps_order_and_expiry_and_respects_the_bounds() -> None:
    source = LRUStore(10, 1 << 20)
    for index in range(4):
        source.put(f"k{index}", index, 10, 60)
    target = LRUStore(3, 1 << 20)
    assert target.copy_from(source) == 4
    assert list(target.keys()) == ["k1", "k2", "k3"]
    assert target.bytes == 30
