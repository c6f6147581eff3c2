"""Fixtures for provider tests: a fake OpenAI/Anthropic server on loopback, provider settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from orchestrator.harness.provider_server import FakeProviderServer
from workers.core.settings import Settings
from workers.providers import close_clients

API_KEY = "sk-test-Zq93kf-never-shown-7741"


@pytest.fixture
def fake_provider() -> Iterator[FakeProviderServer]:
    server = FakeProviderServer().start()
    yield server
    server.close()
    close_clients()


@pytest.fixture
def provider_settings(
    fake_provider: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Embedded-mode settings that point ``provider`` at the fake server."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)

    def build(provider: str = "openai", **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "provider": provider,
            "model": "fake-model",
            "provider_base_url": fake_provider.root
            if provider == "anthropic"
            else fake_provider.url,
            "provider_api_key": API_KEY,
        }
        values.update(overrides)
        return Settings(**values)

    return build
