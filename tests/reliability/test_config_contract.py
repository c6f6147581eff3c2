"""The configuration RELIABILITY.md assumes, checked on a real app (and refused when broken)."""

from __future__ import annotations

import pytest

from workers.celery_app.factory import check_config, create_app
from workers.core.errors import ConfigError
from workers.core.keys import Keys
from workers.core.names import RECONCILE_TASK

pytestmark = [pytest.mark.redis]


def test_distributed_app_keeps_the_delivery_contract(redis_settings) -> None:
    settings = redis_settings(
        task_time_limit_s=20, visibility_timeout_s=30, reconciler_stale_after_s=45
    )
    app = create_app(settings)
    conf = app.conf
    keys = Keys(settings.key_prefix)
    assert conf.task_serializer == conf.result_serializer == conf.event_serializer == "json"
    assert list(conf.accept_content) == list(conf.result_accept_content) == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.task_acks_on_timeout is False  # a hard time limit requeues; the cap bounds it
    assert conf.worker_prefetch_multiplier == 1
    # billiard must report a dead pool child well before the task's time limit fires.
    assert conf.worker_lost_wait < conf.task_time_limit
    broker = conf.broker_transport_options
    backend = conf.result_backend_transport_options
    assert conf.task_time_limit < broker["visibility_timeout"] < settings.reconciler_stale_after_s
    assert backend["visibility_timeout"] == broker["visibility_timeout"]
    # The restore sweep runs every interval (throttle 1), well inside the visibility timeout.
    assert broker["unacked_restore_throttle"] == 1
    assert broker["unacked_restore_interval"] <= broker["visibility_timeout"] / 2
    assert broker["global_keyprefix"] == keys.broker_prefix
    assert backend["global_keyprefix"] == keys.backend_prefix
    assert app.backend.get_key_for_task("t").decode().startswith(keys.backend_prefix)
    schedule = conf.beat_schedule["victor-reconcile"]
    assert schedule["task"] == RECONCILE_TASK and RECONCILE_TASK in app.tasks
    assert schedule["schedule"] < settings.reconciler_stale_after_s
    app.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("accept_content", ["json", "pickle"]),
        ("result_accept_content", ["pickle"]),
        ("task_serializer", "pickle"),
        ("task_acks_late", False),
        ("task_reject_on_worker_lost", False),
        ("task_time_limit", 3600),
    ],
)
def test_check_config_refuses_a_broken_contract(redis_settings, name: str, value: object) -> None:
    app = create_app(redis_settings())
    app.conf[name] = value
    with pytest.raises(ConfigError):
        check_config(app)
    app.close()
