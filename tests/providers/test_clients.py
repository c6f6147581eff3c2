"""Provider clients against a fake server: pooling, retries, timeouts, streaming, no key leaks."""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

import pytest

from orchestrator.harness.provider_server import FakeProviderServer, PlannedError
from tests.providers.conftest import API_KEY
from workers.core.settings import Settings
from workers.providers import (
    ChatRequest,
    ProviderConfigError,
    ProviderRequestError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    complete,
    embed_texts,
    pooled_client,
    provider_config,
)

HELLO = ChatRequest(messages=[{"role": "user", "content": "hello there"}])


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
def test_chat_answers_in_each_wire_format(provider_settings, provider: str) -> None:
    answer = complete(provider_settings(provider), HELLO)
    assert answer.text == "echo: hello there"
    assert answer.provider == provider


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_streaming_delivers_the_text_in_pieces(provider_settings, provider: str) -> None:
    pieces: list[str] = []
    answer = complete(provider_settings(provider), HELLO, on_text=pieces.append)
    assert len(pieces) > 1
    assert "".join(pieces) == answer.text == "echo: hello there"


def test_embeddings_come_back_in_input_order_and_batches(provider_settings, fake_provider) -> None:
    settings = provider_settings("vllm", local_provider_batch_size=2)
    vectors = embed_texts(settings, ["a", "b", "c"], batch_size=settings.local_provider_batch_size)
    assert len(vectors) == 3 and vectors[0] != vectors[1]
    sizes = [len(seen.body["input"]) for seen in fake_provider.requests()]
    assert sizes == [2, 1]


def test_one_client_per_process_and_provider(provider_settings) -> None:
    settings = provider_settings()
    first = pooled_client(provider_config(settings))
    assert pooled_client(provider_config(settings)) is first
    settings.openai_timeout = 7.0
    rebuilt = pooled_client(provider_config(settings))
    assert rebuilt is not first


def test_the_sdks_are_imported_on_first_use_only() -> None:
    import subprocess

    code = (
        "import sys, workers, orchestrator.cli, workers.providers, tasks.catalog;"
        "print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_open_connections_stay_within_the_pool_bounds(provider_settings, fake_provider) -> None:
    settings = provider_settings(
        connection_pool_size=2, connection_pool_max_overflow=1, openai_concurrent_requests=50
    )
    fake_provider.delay_s = 0.05
    errors: list[BaseException] = []

    def call() -> None:
        try:
            complete(settings, HELLO)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(fake_provider.requests()) == 24
    # Under load the pool opens up to size + overflow connections, never more.
    assert fake_provider.counters.max_connections == 3
    assert fake_provider.counters.max_in_flight <= 3


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(provider_settings, fake_provider, status: int) -> None:
    fake_provider.plan_errors(status, 2, retry_after_s=0.4)
    answer = complete(provider_settings(openai_max_retries=3), HELLO)
    assert answer.text == "echo: hello there"
    times = [seen.at for seen in fake_provider.requests()]
    assert len(times) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= 0.38 for gap in gaps), gaps


@pytest.mark.parametrize(
    ("provider", "setting"),
    [("openai", "openai_max_retries"), ("anthropic", "anthropic_max_retries")],
)
def test_gives_up_after_max_retries_naming_provider_and_setting(
    provider_settings, fake_provider, provider: str, setting: str
) -> None:
    fake_provider.always = PlannedError(503, 0.05)
    settings = provider_settings(provider, **{setting: 2})
    with pytest.raises(ProviderUnavailableError) as caught:
        complete(settings, HELLO)
    assert len(fake_provider.requests()) == 3  # the call and two retries
    message = str(caught.value)
    assert provider in message and f"{setting}=2" in message


@pytest.mark.parametrize(
    ("provider", "setting"),
    [
        ("openai", "openai_timeout"),
        ("anthropic", "anthropic_timeout"),
        ("ollama", "local_provider_timeout"),
    ],
)
def test_timeout_fires_at_the_configured_value(
    provider_settings, fake_provider, provider: str, setting: str
) -> None:
    fake_provider.delay_s = 3.0
    prefix = setting.removesuffix("_timeout")
    settings = provider_settings(provider, **{setting: 0.4, f"{prefix}_max_retries": 0})
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError) as caught:
        complete(settings, HELLO)
    elapsed = time.monotonic() - started
    assert 0.35 <= elapsed < 1.5, elapsed
    assert f"{setting}=0.4" in str(caught.value)


def test_a_local_provider_without_base_url_is_refused(monkeypatch) -> None:
    with pytest.raises(ProviderConfigError, match="provider_base_url"):
        provider_config(Settings(provider="local", model="m"))


def test_the_key_comes_from_the_provider_variable(monkeypatch, fake_provider) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env-1234")
    settings = Settings(provider="anthropic", model="m", provider_base_url=fake_provider.root)
    complete(settings, HELLO)
    assert fake_provider.requests()[0].credential.endswith("sk-from-env-1234")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ProviderConfigError, match="ANTHROPIC_API_KEY"):
        provider_config(settings)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_api_key_appears_in_no_log_line_or_exception(
    provider_settings, fake_provider, caplog, provider: str
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = provider_settings(provider, openai_max_retries=1, anthropic_max_retries=1)
    complete(settings, HELLO)
    raised: list[BaseException] = []
    for status, error_type in ((401, ProviderRequestError), (429, ProviderUnavailableError)):
        fake_provider.always = PlannedError(status, 0.01)
        with pytest.raises(error_type) as caught:
            complete(settings, HELLO)
        raised.append(caught.value)
    fake_provider.always = None
    # The fake server echoed the key in its error bodies; it reached the client.
    assert any(API_KEY in seen.credential for seen in fake_provider.requests())
    assert "credential" in str(raised[0])
    for exc in raised:
        text = "".join(traceback.format_exception(exc))
        assert API_KEY not in text
        assert API_KEY not in repr(exc)
    assert caplog.records, "debug logging was captured"
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
    assert API_KEY not in repr(settings) and API_KEY not in repr(provider_config(settings))


def test_settings_changes_take_effect_on_the_next_call(
    provider_settings: Callable[..., Settings], fake_provider: FakeProviderServer
) -> None:
    settings = provider_settings(openai_max_retries=0)
    fake_provider.plan_errors(503, 1)
    with pytest.raises(ProviderUnavailableError):
        complete(settings, HELLO)
    settings.openai_max_retries = 1
    fake_provider.plan_errors(503, 1, retry_after_s=0.01)
    assert complete(settings, HELLO).text == "echo: hello there"
