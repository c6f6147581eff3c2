"""Sub-goals through a provider with structured output, against a fake server on loopback.

The fake server answers chat by echoing; here its handler answers a request that carries a
JSON schema (OpenAI ``response_format``, Anthropic ``output_config.format``) with sub-goals split
at the word "plus" (which the rules never split at), so a plan shows which of the two split it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.text_planning import bm25_ranker, plan_text
from orchestrator.harness import provider_server
from orchestrator.harness.provider_server import FakeProviderServer
from workers.core.settings import Settings
from workers.providers import close_clients
from workers.skills import load_registry

API_KEY = "sk-test-planning-never-shown-5521"


def _split_at_plus(body: dict[str, Any]) -> str:
    goal = str(body["messages"][-1]["content"])
    parts = [part.strip() for part in goal.split(" plus ")]
    return json.dumps({"sub_goals": parts, "ordered": False})


class _StructuredHandler(provider_server._Handler):
    def _openai_chat(self, body: dict[str, Any], model: str) -> None:
        response_format = body.get("response_format") or {}
        if response_format.get("type") != "json_schema":
            super()._openai_chat(body, model)
            return
        self._json(200, provider_server.openai_completion(model, _split_at_plus(body)))

    def _anthropic_chat(self, body: dict[str, Any], model: str) -> None:
        output_format = (body.get("output_config") or {}).get("format") or {}
        if output_format.get("type") != "json_schema":
            super()._anthropic_chat(body, model)
            return
        text = "```json\n" + _split_at_plus(body) + "\n```"
        self._json(200, provider_server.anthropic_message(model, text))


@pytest.fixture
def server() -> Iterator[FakeProviderServer]:
    fake = FakeProviderServer()
    fake.RequestHandlerClass = _StructuredHandler
    fake.start()
    yield fake
    fake.close()
    close_clients()


@pytest.fixture
def echo_server() -> Iterator[FakeProviderServer]:
    fake = FakeProviderServer().start()
    yield fake
    fake.close()
    close_clients()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "core.py").write_text("x = 1  # TODO\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    return tmp_path


def _settings(
    fake: FakeProviderServer, tree: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> Settings:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    return Settings(
        provider=provider,
        model="fake-model",
        provider_base_url=fake.root if provider == "anthropic" else fake.url,
        provider_api_key=API_KEY,
        allowed_roots=[tree],
        enable_hierarchical_planning=True,
    )


GOAL = "analyze pkg plus read notes.txt plus find 'TODO' in pkg"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_provider_splits_a_goal_with_structured_output(
    provider: str,
    server: FakeProviderServer,
    tree: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(server, tree, monkeypatch, provider)
    registry = load_registry()
    ranker = bm25_ranker(registry, settings.tool_selection_max_tools)
    planned = plan_text(GOAL, settings, registry, ranker=ranker)

    assert planned.split_by == "provider"
    assert [sub_goal.text for sub_goal in planned.sub_goals] == [
        "analyze pkg",
        "read notes.txt",
        "find 'TODO' in pkg",
    ]
    assert [step.skill for step in planned.goal.steps] == [
        "analyze_code",
        "read_file",
        "search_code",
    ]
    assert planned.goal.strategy == "parallel"  # the answer said the order does not matter
    [request] = server.requests()
    if provider == "openai":
        schema = request.body["response_format"]["json_schema"]["schema"]
    else:
        schema = request.body["output_config"]["format"]["schema"]
    assert schema["required"] == ["sub_goals", "ordered"]
    assert request.body["messages"][-1]["content"] == GOAL


def test_an_answer_that_is_not_the_json_asked_for_falls_back_to_the_rules(
    echo_server: FakeProviderServer, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(echo_server, tree, monkeypatch, "openai")
    registry = load_registry()
    ranker = bm25_ranker(registry, settings.tool_selection_max_tools)
    planned = plan_text("analyze pkg then read notes.txt", settings, registry, ranker=ranker)

    assert len(echo_server.requests()) == 1
    assert planned.split_by == "rules"
    assert [step.skill for step in planned.goal.steps] == ["analyze_code", "read_file"]
    assert "not usable" in planned.notes[0]


def test_a_provider_error_falls_back_to_the_rules_without_the_key(
    echo_server: FakeProviderServer, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    echo_server.plan_errors(400, 1)
    settings = _settings(echo_server, tree, monkeypatch, "openai")
    registry = load_registry()
    ranker = bm25_ranker(registry, settings.tool_selection_max_tools)
    planned = plan_text("analyze pkg then read notes.txt", settings, registry, ranker=ranker)

    assert planned.split_by == "rules"
    assert planned.goal.strategy == "sequential"
    assert "openai" in planned.notes[0]
    assert API_KEY not in " ".join(planned.notes)


def test_without_hierarchical_planning_the_provider_is_not_asked(
    echo_server: FakeProviderServer, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(echo_server, tree, monkeypatch, "openai")
    settings = settings.model_copy(update={"enable_hierarchical_planning": False})
    registry = load_registry()
    ranker: Callable[[str], list[list[Any]]] = bm25_ranker(
        registry, settings.tool_selection_max_tools
    )
    planned = plan_text("analyze pkg then search it for 'TODO'", settings, registry, ranker=ranker)

    assert echo_server.requests() == []
    assert planned.split_by == "none"
    assert len(planned.goal.steps) == 1
