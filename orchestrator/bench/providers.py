"""Provider calls against the fake provider on loopback, in one run.

- pooled client vs a new client per call: requests/s of sequential chat calls (ratio);
- the fleet-wide limit: two worker processes send chat calls through one Redis; the most
  requests the server saw at once, against ``openai_concurrent_requests``;
- cached vs uncached chat latency through the chat skill (response cache, L1);
- select_tools top-1 accuracy on the labelled goals, and its latency (uncached).
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator.bench.environment import bench_redis
from orchestrator.bench.goal_labels import LABELLED_GOALS
from orchestrator.bench.stats import percentile
from orchestrator.bench.tool_selection import local_settings
from orchestrator.core.session import Session
from orchestrator.harness.provider_server import FakeProviderServer
from workers.core.settings import Settings
from workers.providers import ChatRequest, close_clients, complete, provider_config
from workers.providers.clients import unpooled_client
from workers.runtime import Runtime
from workers.skills.registry import load_registry

SIZES = {
    "tiny": {"calls": 20, "fleet_calls": 12, "chat": 10, "delay_s": 0.05},
    "default": {"calls": 300, "fleet_calls": 60, "chat": 100, "delay_s": 0.1},
    "full": {"calls": 2000, "fleet_calls": 200, "chat": 500, "delay_s": 0.1},
}
FLEET_LIMIT = 3
BENCH_KEY = "sk-bench-not-a-real-key"
REQUEST = ChatRequest(messages=[{"role": "user", "content": "ping"}])


def _settings(server: FakeProviderServer, **values: Any) -> Settings:
    return local_settings(
        provider="openai",
        model="fake-model",
        provider_base_url=server.url,
        provider_api_key=BENCH_KEY,
        openai_concurrent_requests=100,
        **values,
    )


def measure_pooling(server: FakeProviderServer, calls: int) -> dict[str, Any]:
    """Requests/s of ``calls`` sequential chats: one pooled client vs a new client each."""
    settings = _settings(server)
    complete(settings, REQUEST)  # build the pooled client and the SDK import outside the clock
    server.reset()
    started = time.perf_counter()
    for _ in range(calls):
        complete(settings, REQUEST)
    pooled_s = time.perf_counter() - started
    pooled_connections = server.counters.connections_opened
    server.reset()
    config = provider_config(settings)
    started = time.perf_counter()
    for _ in range(calls):
        client = unpooled_client(config)
        try:
            complete(settings, REQUEST, client=client)
        finally:
            client.http.close()
    fresh_s = time.perf_counter() - started
    return {
        "calls": calls,
        "pooled_rps": round(calls / pooled_s, 1),
        "new_client_rps": round(calls / fresh_s, 1),
        "pooled_vs_new_client": round(fresh_s / pooled_s, 2),
        "connections_opened": {
            "pooled": pooled_connections,
            "new_client": server.counters.connections_opened,
        },
    }


def measure_fleet_limit(server: FakeProviderServer, calls: int, delay_s: float) -> dict[str, Any]:
    """Two worker processes (3 pool children each) share a limit of ``FLEET_LIMIT``."""
    server.reset()
    server.delay_s = delay_s
    with bench_redis() as env:
        provider_env = {
            "VICTOR_PROVIDER": "openai",
            "VICTOR_MODEL": "fake-model",
            "VICTOR_PROVIDER_BASE_URL": server.url,
            "VICTOR_PROVIDER_API_KEY": BENCH_KEY,
            "VICTOR_OPENAI_CONCURRENT_REQUESTS": str(FLEET_LIMIT),
        }
        env.worker(concurrency=3, **provider_env)
        env.worker(concurrency=3, **provider_env)
        settings = env.settings()
        started = time.perf_counter()
        with Session(settings) as session:
            results = [
                session.app.send_task(
                    "victor.skill.chat",
                    kwargs={
                        "messages": [{"role": "user", "content": f"q{index}"}],
                        "use_cache": False,
                    },
                )
                for index in range(calls)
            ]
            answered = sum(1 for result in results if result.get(timeout=300)["text"])
        elapsed = time.perf_counter() - started
    server.delay_s = 0.0
    return {
        "calls": calls,
        "answered": answered,
        "workers": 2,
        "pool_children": 6,
        "limit": FLEET_LIMIT,
        "max_concurrent_seen": server.counters.max_in_flight,
        "held": server.counters.max_in_flight <= FLEET_LIMIT,
        "elapsed_s": round(elapsed, 3),
        "call_delay_s": delay_s,
    }


def measure_chat_cache(server: FakeProviderServer, calls: int) -> dict[str, Any]:
    """Latency of the chat skill through the executor: cached (L1) vs ``use_cache=False``."""
    runtime = Runtime(_settings(server), load_registry())
    params = {"messages": [{"role": "user", "content": "cached question"}]}
    runtime.executor.run("chat", params)
    server.reset()

    def sample(options: dict[str, Any]) -> list[float]:
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            runtime.executor.run("chat", {**params, **options})
            samples.append(time.perf_counter() - started)
        return samples

    cached = sample({})
    calls_when_cached = len(server.requests())
    uncached = sample({"use_cache": False})
    cached_ms = percentile(cached, 0.5) * 1000
    uncached_ms = percentile(uncached, 0.5) * 1000
    return {
        "cached_p50_ms": round(cached_ms, 4),
        "uncached_p50_ms": round(uncached_ms, 3),
        "uncached_vs_cached": round(uncached_ms / cached_ms, 1) if cached_ms else None,
        "provider_calls_while_cached": calls_when_cached,
    }


def measure_selection() -> dict[str, Any]:
    """select_tools top-1 accuracy on the labelled goals, and its uncached latency."""
    runtime = Runtime(local_settings(tool_selection_cache_enabled=False), load_registry())
    right = 0
    samples = []
    for goal, skill in LABELLED_GOALS:
        started = time.perf_counter()
        tools = runtime.executor.run("select_tools", {"query": goal})["tools"]
        samples.append(time.perf_counter() - started)
        right += bool(tools) and tools[0][0] == skill
    return {
        "goals": len(LABELLED_GOALS),
        "top1_accuracy": round(right / len(LABELLED_GOALS), 3),
        "p50_ms": round(percentile(samples, 0.5) * 1000, 3),
        "p95_ms": round(percentile(samples, 0.95) * 1000, 3),
    }


def run(size: str) -> dict[str, Any]:
    plan = SIZES[size]
    server = FakeProviderServer().start()
    try:
        pooling = measure_pooling(server, int(plan["calls"]))
        fleet = measure_fleet_limit(server, int(plan["fleet_calls"]), float(plan["delay_s"]))
        chat = measure_chat_cache(server, int(plan["chat"]))
    finally:
        server.close()
        close_clients()
    selection = measure_selection()
    return {
        "ratio": pooling["pooled_vs_new_client"],
        "ours": pooling["pooled_rps"],
        "peer": pooling["new_client_rps"],
        "unit": "chat requests/s, sequential; ratio = pooled client / new client per call",
        "pooling": pooling,
        "fleet_limit": fleet,
        "chat_cache": chat,
        "select_tools": selection,
    }
