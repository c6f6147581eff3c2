"""The chat, summarize and embed skills against the fake provider: cache, personas, fallbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.catalog import ChatInput, EmbedInput, SummarizeInput
from tasks.chat import cache_material, chat, chat_request
from tasks.embed import embed
from tasks.summarize import extractive_summary, summarize
from tests.providers.conftest import API_KEY
from workers.cache import CacheProvider
from workers.core.settings import Settings
from workers.providers.errors import ProviderConfigError
from workers.providers.personas import loaded_directories
from workers.skills.spec import SkillContext


def _context(settings: Settings) -> SkillContext:
    return SkillContext(settings, {"cache": CacheProvider(settings)})


def _ask(text: str, **options: object) -> ChatInput:
    return ChatInput.model_validate({"messages": [{"role": "user", "content": text}], **options})


def test_a_cached_chat_makes_no_call(provider_settings, fake_provider) -> None:
    context = _context(provider_settings())
    first = chat(_ask("what is a lease"), context)
    second = chat(_ask("what is a lease"), context)
    assert (
        first
        == second
        == {"text": "echo: what is a lease", "provider": "openai", "model": "fake-model"}
    )
    assert len(fake_provider.requests()) == 1


def test_use_cache_false_always_calls(provider_settings, fake_provider) -> None:
    context = _context(provider_settings())
    chat(_ask("again"), context)
    chat(_ask("again", use_cache=False), context)
    chat(_ask("again", use_cache=False), context)
    assert len(fake_provider.requests()) == 3


def test_the_cache_key_holds_no_api_key_and_changes_with_the_model(provider_settings) -> None:
    settings = provider_settings()
    context = _context(settings)
    chat(_ask("secret?"), context)
    cache = context.services["cache"]().response  # type: ignore[operator]
    keys = list(cache.l1._data)
    assert keys and all(API_KEY not in key for key in keys)
    material = cache_material(chat_request(_ask("x"), settings), settings)
    assert API_KEY not in repr(material)
    other = provider_settings(model="other-model")
    assert cache_material(chat_request(_ask("x"), other), other) != material


def test_a_persona_sets_system_prompt_model_and_temperature(
    provider_settings, fake_provider, tmp_path: Path
) -> None:
    (tmp_path / "terse.yaml").write_text(
        "system: Answer in one word.\nmodel: persona-model\ntemperature: 0.2\n"
        "options: {top_p: 0.5}\n"
    )
    settings = provider_settings(personas_dir=str(tmp_path))
    assert str(tmp_path) not in loaded_directories()  # lazily: nothing read yet
    chat(_ask("hi", persona="terse"), _context(settings))
    assert str(tmp_path) in loaded_directories()
    body = fake_provider.requests()[0].body
    assert body["model"] == "persona-model"
    assert body["temperature"] == 0.2 and body["top_p"] == 0.5
    assert body["messages"][0] == {"role": "system", "content": "Answer in one word."}
    with pytest.raises(ProviderConfigError, match="known: terse"):
        chat(_ask("hi", persona="chatty"), _context(settings))


def test_summarize_without_a_provider_is_extractive() -> None:
    text = (
        "Redis holds the fleet's leases. The weather was fine. Leases expire when a worker dies. "
        "A worker renews its leases while it runs. Lunch was at noon."
    )
    result = summarize(SummarizeInput(text=text, max_sentences=2), _context(Settings()))
    assert result["method"] == "extractive"
    assert "lease" in result["summary"].lower() and "Lunch" not in result["summary"]
    assert extractive_summary("One. Two.", 3) == "One. Two."


def test_summarize_goes_through_the_provider_when_configured(
    provider_settings, fake_provider
) -> None:
    result = summarize(SummarizeInput(text="Some long text."), _context(provider_settings()))
    assert result["method"] == "provider" and result["summary"].startswith("echo: Summarize")
    assert len(fake_provider.requests()) == 1


def test_embed_uses_the_provider_in_batches_and_caches_vectors(
    provider_settings, fake_provider
) -> None:
    settings = provider_settings("ollama", local_provider_batch_size=2)
    context = _context(settings)
    first = embed(EmbedInput(texts=["a", "b", "c"]), context)
    assert first["dimensions"] == 8 and len(first["vectors"]) == 3
    assert [len(seen.body["input"]) for seen in fake_provider.requests()] == [2, 1]
    again = embed(EmbedInput(texts=["c", "d"]), context)
    assert again["vectors"][0] == first["vectors"][2]
    assert fake_provider.requests()[-1].body["input"] == ["d"]  # only the uncached text


def test_embed_without_a_provider_hashes() -> None:
    result = embed(EmbedInput(texts=["a b"], dimensions=16), _context(Settings()))
    assert result["dimensions"] == 16 and len(result["vectors"][0]) == 16


def test_the_facade_chat_answers_and_caches(provider_settings, fake_provider) -> None:
    import asyncio

    from orchestrator.facade import Orchestrator

    async def talk() -> list[str]:
        async with Orchestrator(settings=provider_settings()) as orchestrator:
            return [
                await orchestrator.chat("hello fleet"),
                await orchestrator.chat("hello fleet"),
                await orchestrator.chat("hello fleet", use_cache=False),
            ]

    assert asyncio.run(talk()) == ["echo: hello fleet"] * 3
    assert len(fake_provider.requests()) == 2


def test_a_persona_temperature_reaches_anthropic_too(
    provider_settings, fake_provider, tmp_path: Path
) -> None:
    """Some SDK releases have no temperature argument; the request body carries it anyway."""
    (tmp_path / "calm.yaml").write_text("system: Be calm.\ntemperature: 0.3\n")
    settings = provider_settings("anthropic", personas_dir=str(tmp_path))
    chat(_ask("hi", persona="calm"), _context(settings))
    body = fake_provider.requests()[0].body
    assert body["temperature"] == 0.3 and body["system"] == "Be calm."


def test_personas_are_read_at_worker_start_unless_lazy(tmp_path: Path) -> None:
    from workers.celery_app.factory import create_app
    from workers.celery_app.lifecycle import load_eagerly

    (tmp_path / "eager.yaml").write_text("system: Read at start.\n")
    lazy = create_app(Settings(personas_dir=str(tmp_path), lazy_load_personas=True))
    load_eagerly(lazy)  # what a worker's start runs
    assert str(tmp_path) not in loaded_directories()
    eager = create_app(Settings(personas_dir=str(tmp_path), lazy_load_personas=False))
    load_eagerly(eager)
    assert str(tmp_path) in loaded_directories()
