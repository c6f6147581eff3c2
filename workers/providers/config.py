"""What one provider call needs from Settings: SDK, base URL, key, timeout, retries, limit."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from workers.core.settings import Settings
from workers.providers.errors import ProviderConfigError

Family = Literal["openai", "anthropic", "local"]

# Local servers speak the OpenAI-compatible API; these are their usual addresses.
_LOCAL_BASE_URLS = {"ollama": "http://127.0.0.1:11434/v1", "vllm": "http://127.0.0.1:8000/v1"}
_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
_DEFAULT_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5"}
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
NO_KEY = "not-needed"  # local servers ignore the key, but the SDK wants one


@dataclass(frozen=True)
class ProviderConfig:
    """One provider as the settings describe it; ``setting(...)`` names the knob to change."""

    name: str  # the ``provider`` setting: openai, anthropic, ollama, vllm, local
    family: Family  # the SDK and the settings family it uses
    base_url: str | None
    timeout_s: float
    max_retries: int
    concurrent_requests: int
    pool_size: int
    pool_max_overflow: int
    model: str
    api_key: str = field(repr=False)

    def setting(self, knob: str) -> str:
        """The settings name of ``knob`` (timeout, max_retries, concurrent_requests)."""
        prefix = "local_provider" if self.family == "local" else self.family
        return f"{prefix}_{knob}"

    @property
    def max_connections(self) -> int:
        return self.pool_size + self.pool_max_overflow


def family_of(provider: str) -> Family:
    """The SDK family of a ``provider`` setting value."""
    if provider in ("openai", "anthropic"):
        return provider  # type: ignore[return-value]
    return "local"


def provider_config(settings: Settings, model: str | None = None) -> ProviderConfig:
    """The configuration of ``settings.provider``; raises when it cannot be called."""
    name = settings.provider
    if name == "none":
        raise ProviderConfigError(
            "no model provider is configured; set provider (VICTOR_PROVIDER) to openai, "
            "anthropic, ollama, vllm or local"
        )
    family = family_of(name)
    base_url = settings.provider_base_url or None
    if family == "local":
        base_url = base_url or _LOCAL_BASE_URLS.get(name)
        if not base_url:
            raise ProviderConfigError(
                "provider 'local' needs provider_base_url (VICTOR_PROVIDER_BASE_URL), the "
                "server's OpenAI-compatible address such as http://127.0.0.1:8080/v1"
            )
    chosen_model = model or settings.model or _DEFAULT_MODELS.get(family, "")
    if not chosen_model:
        raise ProviderConfigError(f"provider {name!r} needs a model name; set model (VICTOR_MODEL)")
    prefix = "local_provider" if family == "local" else family
    return ProviderConfig(
        name=name,
        family=family,
        base_url=base_url,
        timeout_s=float(getattr(settings, f"{prefix}_timeout")),
        max_retries=int(getattr(settings, f"{prefix}_max_retries")),
        concurrent_requests=int(getattr(settings, f"{prefix}_concurrent_requests")),
        pool_size=settings.connection_pool_size,
        pool_max_overflow=settings.connection_pool_max_overflow,
        model=chosen_model,
        api_key=_api_key(settings, family),
    )


def _api_key(settings: Settings, family: Family) -> str:
    key = settings.provider_api_key.get_secret_value()
    if key:
        return key
    variable = _KEY_ENV.get(family)
    key = os.environ.get(variable, "") if variable else ""
    if key:
        return key
    if family == "local":
        return NO_KEY
    raise ProviderConfigError(
        f"provider {family!r} needs an API key; set provider_api_key (VICTOR_PROVIDER_API_KEY) "
        f"or {variable}"
    )
