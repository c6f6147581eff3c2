"""The shared multi-level cache: L1 in every process, L2 in Redis, coherent across the fleet."""

from workers.cache.admin import clear_expired_cache, get_cache_stats, invalidate_cache
from workers.cache.backends import RedisBackend
from workers.cache.hooks import CacheProvider, ResponseCacheHook, install_cache
from workers.cache.keying import tenant_scope
from workers.cache.lru import MISSING, LRUStore
from workers.cache.manager import CACHE_NAMES, TOOL_SELECTION_NAMESPACES, CacheManager
from workers.cache.managers import cache_manager, memory_manager
from workers.cache.memory import MemoryBackend
from workers.cache.named import NamedCache

__all__ = [
    "CACHE_NAMES",
    "MISSING",
    "TOOL_SELECTION_NAMESPACES",
    "CacheManager",
    "CacheProvider",
    "LRUStore",
    "MemoryBackend",
    "NamedCache",
    "RedisBackend",
    "ResponseCacheHook",
    "cache_manager",
    "clear_expired_cache",
    "get_cache_stats",
    "install_cache",
    "invalidate_cache",
    "memory_manager",
    "tenant_scope",
]
