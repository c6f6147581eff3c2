"""The embedded worker leaves its host process usable as an ordinary Celery client."""

from __future__ import annotations

from orchestrator.core.session import Session


def test_results_can_be_waited_on_while_and_after_the_embedded_worker_runs(
    embedded_settings,
) -> None:
    settings = embedded_settings()
    with Session(settings) as session:
        result = session.app.signature("victor.skill.noop", kwargs={"value": 7}).apply_async()
        assert result.get(timeout=10) == 7
    with Session(settings) as session:
        result = session.app.signature("victor.skill.noop", kwargs={"value": 8}).apply_async()
        assert result.get(timeout=10) == 8
