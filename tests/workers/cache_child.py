"""A separate process using the cache, driven by the fleet tests (JSON lines on stdin/stdout).

``serve``: answer ``fill``/``peek``/``stats`` requests; ``flight START COUNTER``: at wall time
START, look up one key whose computation takes 0.5 s and counts itself in Redis.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import redis

from workers.cache import cache_manager
from workers.cache.lru import MISSING
from workers.core.settings import load_settings


def _reply(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def serve() -> None:
    settings = load_settings()
    manager = cache_manager(settings)
    computed = 0
    _reply({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "stats":
            manager.publish_stats()
            _reply(manager.stats())
            continue
        cache = manager.cache(request.get("cache", "response"))
        key = cache.key(request["skill"], "1", request["material"])
        if request["op"] == "fill":

            def compute(material: Any = request["material"]) -> dict[str, Any]:
                nonlocal computed
                computed += 1
                return {"material": material}

            cache.get_or_compute(key, compute)
            _reply({"computed": computed})
        elif request["op"] == "peek":
            _reply({"in_l1": cache.l1.get(key) is not MISSING})


def flight(start_at: float, counter_key: str) -> None:
    settings = load_settings()
    manager = cache_manager(settings)
    client = redis.Redis.from_url(settings.redis_url or "")
    key = manager.response.key("slow", "1", {"flight": counter_key})

    def compute() -> dict[str, Any]:
        client.incr(counter_key)
        time.sleep(0.5)
        return {"answer": 42}

    time.sleep(max(0.0, start_at - time.time()))
    value = manager.response.get_or_compute(key, compute)
    manager.publish_stats()
    _reply({"value": value, "stats": manager.response.stats()})
    manager.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        flight(float(sys.argv[2]), sys.argv[3])
