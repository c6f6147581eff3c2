"""Provider calls: chat completions (whole or streamed) and embeddings, in a fleet-wide slot.

The one place SDK exceptions become ours (``workers.providers.errors``): the message names the
provider and the setting to change, and never carries the API key (a server's error text is
scrubbed of it, and the SDK exception is not chained, since its text may echo the request).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from workers.core.settings import Settings
from workers.providers.clients import PooledClient, pooled_client, sdk_module
from workers.providers.config import DEFAULT_EMBEDDING_MODEL, ProviderConfig, provider_config
from workers.providers.errors import (
    ProviderError,
    ProviderRequestError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from workers.providers.limits import provider_slot

Message = dict[str, str]
DEFAULT_MAX_TOKENS = 1024
_DETAIL_CHARS = 200


@dataclass(frozen=True)
class Completion:
    """A chat answer and what produced it."""

    text: str
    provider: str
    model: str
    waited_s: float = 0.0


@dataclass(frozen=True)
class ChatRequest:
    """One chat call: messages plus the options a persona or caller chose."""

    messages: list[Message]
    system: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    options: dict[str, Any] | None = None


def complete(
    settings: Settings,
    request: ChatRequest,
    on_text: Callable[[str], None] | None = None,
    client: PooledClient | None = None,
) -> Completion:
    """Send ``request`` to ``settings.provider``; with ``on_text`` it streams the text to it.

    ``client`` replaces this process's pooled client (the bench's unpooled baseline).
    """
    config = provider_config(settings, request.model)
    with provider_slot(settings, config) as waited, _translated(config):
        sdk_client = (client or pooled_client(config)).sdk
        if config.family == "anthropic":
            text = _anthropic_chat(sdk_client, config, request, on_text)
        else:
            text = _openai_chat(sdk_client, config, request, on_text)
    return Completion(text=text, provider=config.name, model=config.model, waited_s=waited)


def embed_texts(
    settings: Settings, texts: list[str], batch_size: int | None = None
) -> list[list[float]]:
    """Embeddings of ``texts`` from the provider's embeddings endpoint, ``batch_size`` a call."""
    model = settings.embedding_model or (
        settings.model if settings.provider not in ("openai", "anthropic") else ""
    )
    config = provider_config(settings, model or DEFAULT_EMBEDDING_MODEL)
    if config.family == "anthropic":
        raise ProviderRequestError(
            "provider 'anthropic' has no embeddings endpoint; the embed skill falls back to "
            "hashed embeddings (set embedding_model with an OpenAI-compatible provider)"
        )
    size = batch_size or len(texts) or 1
    vectors: list[list[float]] = []
    for start in range(0, len(texts), size):
        batch = texts[start : start + size]
        with provider_slot(settings, config), _translated(config):
            answer = pooled_client(config).sdk.embeddings.create(model=config.model, input=batch)
        ordered = sorted(answer.data, key=lambda item: item.index)
        vectors.extend([float(value) for value in item.embedding] for item in ordered)
    return vectors


def _openai_chat(
    sdk_client: Any,
    config: ProviderConfig,
    request: ChatRequest,
    on_text: Callable[[str], None] | None,
) -> str:
    messages = list(request.messages)
    if request.system:
        messages.insert(0, {"role": "system", "content": request.system})
    options: dict[str, Any] = dict(request.options or {})
    if request.temperature is not None:
        options["temperature"] = request.temperature
    options.setdefault("max_tokens", request.max_tokens)
    if on_text is None:
        answer = sdk_client.chat.completions.create(
            model=config.model, messages=messages, **options
        )
        return str(answer.choices[0].message.content or "")
    parts: list[str] = []
    stream = sdk_client.chat.completions.create(
        model=config.model, messages=messages, stream=True, **options
    )
    with stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
                on_text(parts[-1])
    return "".join(parts)


@functools.cache
def _takes_argument(function: Any, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _takes(method: Any, name: str) -> bool:
    """Whether an SDK method (bound: looked up by its function) accepts ``name``."""
    return _takes_argument(getattr(method, "__func__", method), name)


def _anthropic_chat(
    sdk_client: Any,
    config: ProviderConfig,
    request: ChatRequest,
    on_text: Callable[[str], None] | None,
) -> str:
    system_parts = [request.system] if request.system else []
    messages = []
    for message in request.messages:
        if message["role"] == "system":
            system_parts.append(message["content"])
        else:
            messages.append(message)
    options: dict[str, Any] = dict(request.options or {})
    if request.temperature is not None:
        if _takes(sdk_client.messages.create, "temperature"):
            options["temperature"] = request.temperature
        else:  # SDK releases without the argument still send it in the request body
            options["extra_body"] = {
                **options.get("extra_body", {}),
                "temperature": request.temperature,
            }
    if system_parts:
        options["system"] = "\n\n".join(system_parts)
    options.setdefault("max_tokens", request.max_tokens)
    if on_text is None:
        answer = sdk_client.messages.create(model=config.model, messages=messages, **options)
        return "".join(
            block.text for block in answer.content if getattr(block, "type", "") == "text"
        )
    parts: list[str] = []
    stream = sdk_client.messages.create(
        model=config.model, messages=messages, stream=True, **options
    )
    with stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                parts.append(event.delta.text)
                on_text(parts[-1])
    return "".join(parts)


@contextmanager
def _translated(config: ProviderConfig) -> Iterator[None]:
    """Turn the SDK's exceptions into ``ProviderError``s that name the setting to change."""
    sdk = sdk_module(config)
    try:
        yield
    except sdk.APIError as exc:
        raise translate(exc, config, sdk) from None


def translate(exc: Exception, config: ProviderConfig, sdk: ModuleType) -> ProviderError:
    """The ``ProviderError`` for an SDK exception (its text scrubbed of the key)."""
    name = config.name
    retries = config.setting("max_retries")
    if isinstance(exc, sdk.APITimeoutError):
        timeout = config.setting("timeout")
        return ProviderTimeoutError(
            f"{name} did not answer within {config.timeout_s:g} s ({timeout}="
            f"{config.timeout_s:g}, {retries}={config.max_retries}); raise {timeout} or check "
            f"the server at {config.base_url or 'its default address'}"
        )
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderUnavailableError(
            f"{name} could not be reached at {config.base_url or 'its default address'} after "
            f"{config.max_retries} retries ({retries}={config.max_retries}); check "
            "provider_base_url and that the server runs"
        )
    status = getattr(exc, "status_code", None)
    detail = scrub(_detail(exc), config.api_key)
    if isinstance(status, int) and (status in (408, 409, 429) or status >= 500):
        return ProviderUnavailableError(
            f"{name} answered {status} after {config.max_retries} retries ({retries}="
            f"{config.max_retries}){detail}; raise {retries} or lower "
            f"{config.setting('concurrent_requests')}"
        )
    if status in (401, 403):
        return ProviderRequestError(
            f"{name} refused the API key ({status}){detail}; check provider_api_key "
            "(VICTOR_PROVIDER_API_KEY) or the provider's key variable"
        )
    return ProviderRequestError(f"{name} refused the request ({status}){detail}")


def _detail(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
    if not isinstance(message, str) or not message:
        return ""
    return f": {message[:_DETAIL_CHARS]}"


def scrub(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` (and its bearer form) masked."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text
