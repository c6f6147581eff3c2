"""B4, C1, C2: hostile or broken messages straight to the broker and the result backend.

B4: unknown task, bad arguments, pickle content, oversized input: rejected, the worker keeps
running, no redelivery loop. C1: a pickle payload that would create a canary file: canary
absent. C2: a tampered failure result naming a callable (the CVE-2021-23727 shape): canary
absent, a generic error.
"""

from __future__ import annotations

import json
import pickle
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.exceptions import SecurityError

from workers.core.keys import Keys

pytestmark = [pytest.mark.redis, pytest.mark.integration]


class _Canary:
    """Unpickling this creates ``path`` (a stand-in for any code execution)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def test_b4_c1_hostile_messages_are_rejected_once(
    scenario_factory, worker_factory, tmp_path
) -> None:
    canary = tmp_path / "canary-c1"
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Canary(probe)))  # the payload works: the test can see a breach
    assert probe.exists()
    scenario = scenario_factory()
    worker = worker_factory(scenario.settings, concurrency=2, loglevel="INFO")
    app = scenario.app
    app.send_task("victor.no_such_task", args=(1,))
    bad_args = app.send_task("victor.batch", args=(1, 2, 3, 4, 5))
    app.send_task("victor.skill.noop", kwargs={"value": _Canary(canary)}, serializer="pickle")
    app.send_task("victor.skill.effect", kwargs={"key": "x" * 2_000_000})
    scenario.submit([{"key": "after-the-bad-ones"}])
    scenario.wait(timeout_s=30)
    # Past the visibility timeout and a few restore sweeps: nothing comes back.
    time.sleep(scenario.settings.visibility_timeout_s + 3)
    client = redis.Redis.from_url(scenario.settings.redis_url or "")
    broker = Keys(scenario.settings.key_prefix).broker_prefix
    assert client.llen(f"{broker}victor") == 0
    assert client.hlen(f"{broker}unacked") == 0
    assert not canary.exists()
    assert worker.process is not None and worker.process.poll() is None
    log = worker.log_path.read_text(errors="replace")
    assert log.count("Received unregistered task of type 'victor.no_such_task'") == 1
    assert log.count("Received invalid task message: Refusing to deserialize untrusted") == 1
    assert log.count(f"victor.batch[{bad_args.id}] received") == 1  # never redelivered
    scenario.submit([{"key": "still-serving"}])
    scenario.wait(timeout_s=30)


@pytest.mark.parametrize(
    ("module", "name", "args"),
    [
        ("builtins", "open", "canary"),
        ("os", "system", "touch canary"),
        ("pathlib", "Path.touch", "canary"),
    ],
)
def test_c2_tampered_result_names_a_callable(
    scenario_factory, tmp_path, monkeypatch, module: str, name: str, args: str
) -> None:
    monkeypatch.chdir(tmp_path)
    canary = tmp_path / "canary"
    scenario = scenario_factory()
    app = scenario.app
    task_id = uuid.uuid4().hex
    meta = {
        "status": "FAILURE",
        "task_id": task_id,
        "traceback": None,
        "children": [],
        "date_done": None,
        "result": {"exc_type": name, "exc_module": module, "exc_message": [args, "w"]},
    }
    client = redis.Redis.from_url(scenario.settings.redis_url or "")
    client.set(app.backend.get_key_for_task(task_id), json.dumps(meta), ex=60)
    result = app.AsyncResult(task_id)
    with pytest.raises(SecurityError, match="Expected an exception class"):
        result.get(timeout=5)
    with pytest.raises(SecurityError):
        _ = result.result
    assert not canary.exists()
