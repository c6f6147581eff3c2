"""chat streams into a followed job's events: coalesced item.delta events that add up to the
answer; the cached answer and callers outside a job stream nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.harness.provider_server import FakeProviderServer
from tasks.catalog import ChatInput
from tasks.chat import chat
from tests.orchestrator.api.conftest import live_api  # noqa: F401 - a fixture, used by name
from tests.orchestrator.api.test_jobs import read_events
from tests.providers.conftest import API_KEY
from workers.cache import CacheProvider
from workers.celery_app.factory import create_app
from workers.core.settings import Settings
from workers.ledger import MemoryLedger
from workers.skills.spec import SkillContext
from workers.skills.streaming import MIN_CHARS, TextStream, streaming_item, streaming_to

QUESTION = " ".join(f"word{index}" for index in range(120))  # the fake echoes it: ~840 chars
# BOUND: the fake streams the answer in 4-character pieces within a few ms. The first piece goes
# out at once (the wait for the first token is longer than MIN_INTERVAL_S), then one delta per
# MIN_CHARS characters, and the rest at the end: at most len // MIN_CHARS + 2 deltas.


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_pieces_are_coalesced_by_size_and_by_age() -> None:
    published: list[tuple[int, int, str]] = []
    clock = FakeClock()
    stream = TextStream(lambda *delta: published.append(delta), item=2, clock=clock)
    for _ in range(100):
        stream.push("abcd")  # 400 characters, all at once
    clock.now += 1.0
    stream.push("late")  # an old pending piece goes out by age, however short
    stream.push("!")
    stream.close()
    texts = [text for _, _, text in published]
    assert "".join(texts) == "abcd" * 100 + "late!"
    assert all(len(text) >= MIN_CHARS for text in texts[:-2])
    assert len(published) == 400 // MIN_CHARS + 2  # 6 full deltas, "abcd" + "late", "!"
    offsets = [offset for _, offset, _ in published]
    assert offsets == [sum(len(text) for text in texts[:index]) for index in range(len(texts))]
    assert {item for item, _, _ in published} == {2}


def _ask(text: str, **options: object) -> ChatInput:
    return ChatInput.model_validate({"messages": [{"role": "user", "content": text}], **options})


def test_chat_in_a_job_streams_deltas_and_the_cached_answer_none(
    provider_settings: Callable[..., Settings], fake_provider: FakeProviderServer
) -> None:
    settings = provider_settings()
    context = SkillContext(settings, {"cache": CacheProvider(settings)})
    ledger = MemoryLedger()

    def publish(item: int, offset: int, text: str) -> None:
        ledger.publish_delta("job-1", "job-1.0", item, offset, text)

    with streaming_to(publish), streaming_item(0):
        answer = chat(_ask(QUESTION), context)
        again = chat(_ask(QUESTION), context)  # served from the response cache
    deltas = ledger.deltas("job-1")
    assert "".join(delta.text for delta in deltas) == answer["text"] == again["text"]
    assert 1 < len(deltas) <= len(answer["text"]) // MIN_CHARS + 2  # see BOUND
    assert fake_provider.requests()[0].body.get("stream") is True
    assert len(fake_provider.requests()) == 1

    plain = chat(_ask("outside a job", use_cache=False), context)  # no sink: no stream
    assert plain["text"] == "echo: outside a job"
    assert not fake_provider.requests()[-1].body.get("stream")
    assert len(ledger.deltas("job-1")) == len(deltas)


@pytest.mark.redis
@pytest.mark.integration
def test_a_followed_chat_job_shows_deltas_that_add_up_to_its_result(
    redis_settings: Callable[..., Settings],
    fake_provider: FakeProviderServer,
    worker_factory: Callable[..., Any],
    live_api: Callable[[Settings], Any],  # noqa: F811 - the fixture imported above
) -> None:
    settings = redis_settings(
        provider="openai",
        model="fake-model",
        provider_base_url=fake_provider.url,
        provider_api_key=API_KEY,
    )
    worker_factory(settings, concurrency=2)
    live = live_api(settings)
    client = live.client(live.key())
    goal = {
        "steps": [
            {"skill": "chat", "items": [{"messages": [{"role": "user", "content": QUESTION}]}]}
        ]
    }

    def follow() -> tuple[str, list[tuple[float, str, str | None, Any]]]:
        response = client.post("/v1/jobs", json=goal)
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
            return job_id, read_events(stream)

    started = time.monotonic()
    job_id, events = follow()
    assert events[-1][1] == "end" and events[-1][3]["status"] == "succeeded", events[-1]
    deltas = [data for _, event, _, data in events if event == "item.delta"]
    results = [data for _, event, _, data in events if event == "result"]
    text = results[0]["outcome"][0]["value"]["text"]
    assert text == f"echo: {QUESTION}"
    assert "".join(delta["text"] for delta in deltas) == text
    assert {(delta["task_id"], delta["item"]) for delta in deltas} == {(f"{job_id}.0", 0)}
    assert 1 < len(deltas) <= len(text) // MIN_CHARS + 2  # see BOUND
    kinds = [event for _, event, _, _ in events]
    assert kinds.index("item.delta") < kinds.index("result")  # deltas come before the result
    ledger = create_app(settings).victor.ledger
    assert [delta.text for delta in ledger.deltas(job_id)] == [d["text"] for d in deltas]
    elapsed_s = time.monotonic() - started
    print(f"{len(deltas)} delta events for {len(text)} characters in {elapsed_s:.2f} s")

    # Resuming after the first delta sends the rest of the deltas, not the first again.
    first_id = next(event_id for _, event, event_id, _ in events if event == "item.delta")
    headers = {"Last-Event-ID": first_id}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as stream:
        resumed = read_events(stream)
    assert [data for _, event, _, data in resumed if event == "item.delta"] == deltas[1:]

    # The same question again is answered from the response cache: no call, no deltas.
    _, cached_events = follow()
    assert cached_events[-1][3]["status"] == "succeeded"
    assert not [event for _, event, _, _ in cached_events if event == "item.delta"]
    assert len(fake_provider.requests()) == 1


@pytest.mark.redis
@pytest.mark.integration
def test_victor_submit_follow_prints_the_streamed_text(
    redis_settings: Callable[..., Settings],
    fake_provider: FakeProviderServer,
    worker_factory: Callable[..., Any],
    live_api: Callable[[Settings], Any],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from orchestrator.cli import app

    settings = redis_settings(
        provider="openai",
        model="fake-model",
        provider_base_url=fake_provider.url,
        provider_api_key=API_KEY,
    )
    worker_factory(settings, concurrency=2)
    live = live_api(settings)
    goal = tmp_path / "ask.json"
    message = {"role": "user", "content": QUESTION}
    goal.write_text(json.dumps({"steps": [{"skill": "chat", "items": [{"messages": [message]}]}]}))
    env = {"VICTOR_API_URL": live.url, "VICTOR_API_KEY": live.key()}
    result = CliRunner().invoke(app, ["submit", str(goal), "--follow"], env=env)
    assert result.exit_code == 0, result.output
    assert f"item 0: echo: {QUESTION}" in " ".join(result.output.split())
