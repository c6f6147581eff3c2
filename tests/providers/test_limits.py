"""Fleet-wide provider slots: Redis leases across processes, a semaphore in embedded mode."""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator.core.session import Session
from tasks.catalog import CHAT
from tests.providers.conftest import API_KEY
from workers.providers import (
    ChatRequest,
    ProviderBusyError,
    complete,
    provider_slot,
    slot_leases,
    slot_usage,
)
from workers.providers.config import provider_config
from workers.telemetry.slot_wait import take_slot_wait

HELLO = ChatRequest(messages=[{"role": "user", "content": "hi"}])


def _run_calls(settings, count: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def call() -> None:
        try:
            complete(settings, HELLO)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def test_embedded_mode_holds_the_limit_with_a_semaphore(provider_settings, fake_provider) -> None:
    settings = provider_settings(openai_concurrent_requests=3)
    fake_provider.delay_s = 0.1
    assert _run_calls(settings, 12) == []
    assert fake_provider.counters.max_in_flight == 3


def test_waiting_for_a_slot_counts_as_queue_wait(provider_settings) -> None:
    settings = provider_settings(openai_concurrent_requests=1)
    config = provider_config(settings)
    take_slot_wait()
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with provider_slot(settings, config):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    with provider_slot(settings, config) as waited:
        pass
    thread.join(5)
    assert waited >= 0.25
    assert take_slot_wait() == pytest.approx(waited)


def test_embedded_slot_usage_counts_this_processs_holders_and_waiters(provider_settings) -> None:
    settings = provider_settings(openai_concurrent_requests=1)
    config = provider_config(settings)
    held, release, waiting = threading.Event(), threading.Event(), threading.Event()

    def holder() -> None:
        with provider_slot(settings, config):
            held.set()
            release.wait(5)

    def waiter() -> None:
        waiting.set()
        with provider_slot(settings, config):
            pass

    threads = [threading.Thread(target=holder), threading.Thread(target=waiter)]
    threads[0].start()
    held.wait(5)
    threads[1].start()
    waiting.wait(5)
    deadline = time.monotonic() + 5
    while slot_usage(settings)[0].waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    (usage,) = slot_usage(settings)
    assert (usage.provider, usage.in_use, usage.limit, usage.waiting) == ("openai", 1, 1, 1)
    release.set()
    for thread in threads:
        thread.join(5)
    (usage,) = slot_usage(settings)
    assert (usage.in_use, usage.waiting) == (0, 0)


@pytest.mark.redis
def test_fleet_slots_never_exceed_the_limit_across_threads(
    provider_settings, redis_settings, fake_provider
) -> None:
    base = redis_settings()
    settings = provider_settings(
        redis_url=base.redis_url, key_prefix=base.key_prefix, openai_concurrent_requests=2
    )
    fake_provider.delay_s = 0.1
    assert _run_calls(settings, 10) == []
    assert fake_provider.counters.max_in_flight == 2
    assert slot_leases(settings, "openai").in_use() == 0


@pytest.mark.redis
def test_a_lapsed_holder_is_dropped_and_a_live_one_renewed(redis_settings) -> None:
    settings = redis_settings(provider="openai", model="m", provider_api_key="k" * 8)
    leases = slot_leases(settings, "openai")
    assert leases.take("dead", 1, 0.5)
    assert not leases.take("late", 1, 0.5)
    time.sleep(0.6)  # the dead holder never renews
    assert leases.take("late", 1, 0.5)
    assert leases.renew(leases.key, "late", 0.5)
    assert not leases.renew(leases.key, "dead", 0.5)
    # A held slot outlives its lease while its holder renews it.
    settings.provider_slot_lease_s = 0.6
    config = provider_config(settings)
    leases.release("late")
    with provider_slot(settings, config):
        time.sleep(1.5)
        assert leases.in_use() == 1
    assert leases.in_use() == 0


@pytest.mark.redis
def test_no_slot_in_time_names_the_setting(redis_settings) -> None:
    settings = redis_settings(
        provider="openai",
        model="m",
        provider_api_key="k" * 8,
        openai_concurrent_requests=1,
        task_soft_time_limit_s=1,
        task_time_limit_s=2,
    )
    leases = slot_leases(settings, "openai")
    assert leases.take("other", 1, 30)
    with pytest.raises(ProviderBusyError, match="openai_concurrent_requests=1"):
        with provider_slot(settings, provider_config(settings)):
            pass


def _chat_kwargs(index: int) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": f"q{index}"}], "use_cache": False}


@pytest.mark.redis
@pytest.mark.integration
def test_two_workers_never_exceed_the_fleet_limit_even_when_one_is_killed(
    redis_settings, worker_factory, fake_provider
) -> None:
    limit = 2
    settings = redis_settings(
        provider="openai",
        model="fake-model",
        provider_base_url=fake_provider.url,
        provider_api_key=API_KEY,
        openai_concurrent_requests=limit,
        openai_max_retries=0,
        provider_slot_lease_s=1.5,
        response_cache_enabled=False,
    )
    first = worker_factory(settings, concurrency=3)
    second = worker_factory(settings, concurrency=3)
    fake_provider.delay_s = 0.3
    leases = slot_leases(settings, "openai")
    with Session(settings) as session:
        app = session.app
        results = [app.send_task(CHAT.task_name, kwargs=_chat_kwargs(i)) for i in range(16)]
        answers = [result.get(timeout=60) for result in results]
        assert sorted(answer["text"] for answer in answers) == sorted(
            f"echo: q{i}" for i in range(16)
        )
        assert fake_provider.counters.max_in_flight == limit

        # Now kill a worker while it holds a slot: its slot must free within the lease.
        fake_provider.delay_s = 4.0
        pids = {child.pid for child in first.children()}
        _ = [app.send_task(CHAT.task_name, kwargs=_chat_kwargs(100 + i)) for i in range(6)]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            holders = leases.client.zrange(leases.key, 0, -1)
            if any(int(holder.decode().split(":")[1]) in pids for holder in holders):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the first worker never held a slot")
        first.kill()
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < 10:
            holders = leases.client.zrange(leases.key, 0, -1)
            live = [holder for holder in holders if int(holder.decode().split(":")[1]) in pids]
            if not live and leases.in_use() == limit:
                break  # the dead worker's slot lapsed and the survivor took it
            time.sleep(0.05)
        freed_after = time.monotonic() - killed_at
        assert freed_after < settings.provider_slot_lease_s + 2.0, freed_after
        fake_provider.delay_s = 0.2
        after = [app.send_task(CHAT.task_name, kwargs=_chat_kwargs(200 + i)) for i in range(4)]
        assert [result.get(timeout=60)["text"] for result in after] == [
            f"echo: q{200 + i}" for i in range(4)
        ]
    assert second.process is not None and second.process.poll() is None
    assert fake_provider.counters.max_in_flight == limit
