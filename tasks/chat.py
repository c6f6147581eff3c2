"""chat: messages in, the provider's answer out, through the response cache.

The cache key holds what the answer depends on (messages, system prompt, provider, model,
base URL, temperature, options), never the API key. ``use_cache=False`` always calls.

Run as an item of a job, a call streams from the provider and its text goes out as coalesced
``item.delta`` events to the job's followers (``workers.skills.streaming``); the result is the
whole text all the same. An answer served from the cache streams nothing.
"""

from __future__ import annotations

from typing import Any

from tasks.catalog import ChatInput
from workers.core.settings import Settings
from workers.providers import ChatRequest, complete, provider_config
from workers.providers.personas import persona
from workers.skills.spec import SkillContext
from workers.skills.streaming import text_stream

VERSION = "1"


def chat_request(params: ChatInput, settings: Settings) -> ChatRequest:
    """The provider request for ``params``: the persona's presets, overridden by the call's."""
    preset = persona(settings, params.persona) if params.persona else None
    max_tokens = params.max_tokens or (preset.max_tokens if preset else None)
    return ChatRequest(
        messages=[message.model_dump() for message in params.messages],
        system=params.system or (preset.system if preset else None),
        model=params.model or (preset.model if preset else None),
        temperature=params.temperature
        if params.temperature is not None
        else (preset.temperature if preset else None),
        max_tokens=max_tokens or 1024,
        options=dict(preset.options) if preset else None,
    )


def cache_material(request: ChatRequest, settings: Settings) -> dict[str, Any]:
    """What a cached answer depends on (no credential)."""
    config = provider_config(settings, request.model)
    return {
        "provider": config.name,
        "base_url": config.base_url,
        "model": config.model,
        "messages": request.messages,
        "system": request.system,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "options": request.options,
    }


def chat(params: ChatInput, context: SkillContext) -> dict[str, Any]:
    """Return ``{"text", "provider", "model"}``."""
    settings = context.settings
    request = chat_request(params, settings)

    def call() -> dict[str, Any]:
        stream = text_stream()
        answer = complete(settings, request, on_text=stream.push if stream else None)
        if stream is not None:
            stream.close()
        return {"text": answer.text, "provider": answer.provider, "model": answer.model}

    provider = context.services.get("cache")
    if not params.use_cache or provider is None:
        return call()
    cache = provider().response
    key = cache.key("chat", VERSION, cache_material(request, settings))
    result: dict[str, Any] = cache.get_or_compute(key, call)
    return result
