"""Raw Celery, for D1's comparison: a no-op task with Celery's defaults plus JSON, acks late
and the same visibility timeout, on the same Redis and queue name, its own key prefix."""

from __future__ import annotations

import os

import redis
from celery import Celery
from celery.signals import worker_ready


def make_app(url: str, prefix: str) -> Celery:
    raw = Celery("raw", broker=url, backend=url, set_as_current=False)
    raw.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="victor",
        broker_transport_options={"visibility_timeout": 6, "global_keyprefix": f"{prefix}:q:"},
        result_backend_transport_options={"global_keyprefix": f"{prefix}:r:"},
        worker_hijack_root_logger=False,
    )

    @raw.task(name="raw.noop", shared=False)
    def noop(value: object = None) -> object:
        return value

    def ready(sender: object = None, **_: object) -> None:
        hostname = getattr(sender, "hostname", "raw")
        redis.Redis.from_url(url).set(f"{prefix}:worker:{hostname}:ready", "1", ex=3600)

    worker_ready.connect(ready, weak=False)
    return raw


app = make_app(
    os.environ.get("VICTOR_REDIS_URL", "redis://127.0.0.1:6379/9"),
    os.environ.get("VICTOR_KEY_PREFIX", "raw"),
)
