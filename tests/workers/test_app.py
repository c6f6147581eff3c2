"""The Celery app factory: JSON only, acks late, key prefixes, timeouts, lazy ``celery -A``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from tests.conftest import ROOT
from workers.celery_app.factory import celery_config, check_config
from workers.celery_app.factory import create_app as build_app
from workers.core.errors import ConfigError
from workers.core.names import BATCH_TASK, DEFAULT_QUEUE, REDUCE_TASK
from workers.core.settings import Settings
from workers.skills import load_registry


@pytest.fixture
def make_app() -> Iterator[Callable[[Settings], Celery]]:
    """Build apps for settings; every one is closed afterwards."""
    apps: list[Celery] = []

    def make(settings: Settings) -> Celery:
        app = build_app(settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def run_python(code: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


DISTRIBUTED = {"redis_url": "redis://127.0.0.1:6379/9", "key_prefix": "acme"}


@pytest.mark.parametrize("values", [{}, DISTRIBUTED], ids=["embedded", "distributed"])
def test_config_is_json_only(values: dict[str, Any]) -> None:
    config = celery_config(Settings(**values))
    assert config["task_serializer"] == "json"
    assert config["result_serializer"] == "json"
    assert config["event_serializer"] == "json"
    assert config["accept_content"] == ["json"]
    assert config["result_accept_content"] == ["json"]


@pytest.mark.parametrize("values", [{}, DISTRIBUTED], ids=["embedded", "distributed"])
def test_config_acks_late_and_rejects_on_worker_lost(values: dict[str, Any]) -> None:
    config = celery_config(Settings(**values))
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True


def test_config_carries_limits_and_prefetch_from_settings() -> None:
    settings = Settings(
        worker_prefetch_multiplier=4,
        max_parallel_workers=6,
        task_time_limit_s=100,
        task_soft_time_limit_s=90,
        visibility_timeout_s=200,
        reconciler_stale_after_s=300,
        result_expires_s=3600,
    )
    config = celery_config(settings)
    assert config["worker_prefetch_multiplier"] == 4
    assert config["worker_concurrency"] == 6
    assert config["task_time_limit"] == 100
    assert config["task_soft_time_limit"] == 90
    assert config["result_expires"] == 3600
    assert config["task_default_queue"] == DEFAULT_QUEUE


def test_distributed_config_prefixes_broker_and_backend_keys() -> None:
    config = celery_config(Settings(**DISTRIBUTED, visibility_timeout_s=700))
    broker = config["broker_transport_options"]
    backend = config["result_backend_transport_options"]
    assert broker["global_keyprefix"] == "acme:q:"
    assert backend["global_keyprefix"] == "acme:r:"
    assert broker["visibility_timeout"] == 700
    assert backend["visibility_timeout"] == 700


def test_embedded_config_polls_the_memory_transport_quickly() -> None:
    config = celery_config(Settings(embedded_polling_interval_s=0.002))
    assert config["broker_transport_options"] == {"polling_interval": 0.002}
    assert "result_backend_transport_options" not in config


def test_app_uses_the_settings_urls(make_app: Callable[[Settings], Celery]) -> None:
    app = make_app(Settings(**DISTRIBUTED))
    assert app.conf.broker_url == "redis://127.0.0.1:6379/9"
    assert app.conf.result_backend == "redis://127.0.0.1:6379/9"
    embedded = make_app(Settings())
    assert embedded.conf.broker_url == "memory://"
    assert embedded.conf.result_backend == "cache+memory://"


def test_app_registers_one_task_per_skill_with_stable_names(
    make_app: Callable[[Settings], Celery],
) -> None:
    app = make_app(Settings())
    app.finalize()
    expected = {spec.task_name for spec in load_registry().specs()}
    assert expected <= set(app.tasks)
    assert {BATCH_TASK, REDUCE_TASK} <= set(app.tasks)
    assert "victor.skill.analyze_code" in app.tasks


def test_app_carries_its_runtime(make_app: Callable[[Settings], Celery]) -> None:
    settings = Settings(key_prefix="acme")
    app = make_app(settings)
    runtime = app.victor  # type: ignore[attr-defined]
    assert runtime.settings is settings
    assert runtime.keys.prefix == "acme"
    assert runtime.registry is load_registry()


def test_check_config_accepts_the_factory_config(make_app: Callable[[Settings], Celery]) -> None:
    check_config(make_app(Settings(**DISTRIBUTED)))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("accept_content", ["json", "pickle"]),
        ("accept_content", ["pickle"]),
        ("result_accept_content", ["json", "pickle"]),
        ("task_serializer", "pickle"),
        ("result_serializer", "pickle"),
        ("event_serializer", "pickle"),
    ],
)
def test_check_config_refuses_pickle(
    name: str, value: Any, make_app: Callable[[Settings], Celery]
) -> None:
    app = make_app(Settings())
    app.conf[name] = value
    with pytest.raises(ConfigError, match=name):
        check_config(app)


@pytest.mark.parametrize("name", ["task_acks_late", "task_reject_on_worker_lost"])
def test_check_config_refuses_early_acks(name: str, make_app: Callable[[Settings], Celery]) -> None:
    app = make_app(Settings())
    app.conf[name] = False
    with pytest.raises(ConfigError, match="task_reject_on_worker_lost"):
        check_config(app)


def test_check_config_refuses_a_visibility_timeout_below_the_time_limit(
    make_app: Callable[[Settings], Celery],
) -> None:
    app = make_app(Settings(**DISTRIBUTED))
    app.conf.task_time_limit = 600  # equal to the visibility timeout: a running task redelivers
    with pytest.raises(ConfigError, match="VICTOR_VISIBILITY_TIMEOUT_S"):
        check_config(app)


def test_published_messages_are_json(make_app: Callable[[Settings], Celery]) -> None:
    app = make_app(Settings())
    with app.connection_for_write() as connection:
        queue = connection.SimpleQueue(DEFAULT_QUEUE)
        queue.clear()
        try:
            app.send_task("victor.skill.noop", kwargs={"value": {"nested": [1, 2]}})
            message = queue.get(timeout=5)
            assert message.content_type == "application/json"
            args, kwargs, _ = message.decode()
            assert args == []
            assert kwargs == {"value": {"nested": [1, 2]}}
            message.ack()
        finally:
            queue.close()


@pytest.mark.redis
def test_redis_keys_live_under_the_prefix(
    redis_settings: Callable[..., Settings],
    redis_url: str,
    key_prefix: str,
    make_app: Callable[[Settings], Celery],
) -> None:
    app = make_app(redis_settings())
    result = app.send_task("victor.skill.noop", kwargs={"value": 1})
    app.backend.store_result(result.id, 1, "SUCCESS")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.llen(f"{key_prefix}:q:{DEFAULT_QUEUE}") == 1
        assert client.exists(f"{key_prefix}:r:celery-task-meta-{result.id}")
        assert not client.exists(DEFAULT_QUEUE)
        assert not client.exists(f"celery-task-meta-{result.id}")
    finally:
        client.close()


# --- celery -A workers ---------------------------------------------------------------------


def test_importing_workers_does_not_import_celery() -> None:
    found = run_python(
        """
        import json, sys
        import workers
        print(json.dumps({"celery": "celery" in sys.modules,
                          "app_module": "workers.celery_app.factory" in sys.modules}))
        """
    )
    assert found == {"celery": False, "app_module": False}


def test_celery_finds_the_app_on_first_access() -> None:
    found = run_python(
        """
        import json, sys
        from celery import Celery
        from celery.app.utils import find_app
        import workers
        before = "workers.celery_app.factory" in sys.modules
        app = find_app("workers")
        print(json.dumps({"before": before, "is_celery": isinstance(app, Celery),
                          "runtime": hasattr(app, "victor"), "same": workers.celery is app,
                          "tasks": sorted(t for t in app.tasks if t.startswith("victor."))}))
        """
    )
    assert found["before"] is False
    assert found["is_celery"] and found["runtime"] and found["same"]
    assert "victor.skill.analyze_code" in found["tasks"]


def test_workers_app_is_the_celery_app_after_the_factory_module_was_imported() -> None:
    found = run_python(
        """
        import json
        from celery import Celery
        from celery.app.utils import find_app
        import workers.celery_app.factory
        from workers import app
        found = find_app("workers")
        print(json.dumps({"is_celery": isinstance(found, Celery),
                          "runtime": hasattr(found, "victor"),
                          "imported_is_celery": isinstance(app, Celery), "same": app is found}))
        """
    )
    assert found == {"is_celery": True, "runtime": True, "imported_is_celery": True, "same": True}


def test_celery_cli_loads_the_app() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers", "report"],
        capture_output=True,
        text=True,
        cwd=Path(ROOT),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "accept_content: ['json']" in result.stdout
    assert "task_acks_late: True" in result.stdout
