"""Celery task messages built directly, as kombu's Redis transport stores them.

Publishing through ``app.send_task`` costs far more CPU than the message itself: routing, the
producer pool, signals, a uuid per delivery tag, and (for results) a consumer. A caller that
already knows the queue can build the same message and ``LPUSH`` it itself, in the same round
trip as other Redis writes. What this module builds is what Celery's protocol 2 and kombu's
virtual channel produce for a task sent to the default queue with JSON (checked by a test that
compares it with a message ``send_task`` published), so any Celery worker consumes it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from celery.utils.saferepr import saferepr

from workers.core.keys import Keys
from workers.core.names import DEFAULT_QUEUE, PUBLISHED_HEADER, TENANT_HEADER

_EMBED_JSON = json.dumps({"callbacks": None, "errbacks": None, "chain": None, "chord": None})


@dataclass(frozen=True)
class Route:
    """Where messages go: the queue's Redis list and the ``reply_to`` of this process."""

    queue: str
    list_key: str
    origin: str
    reply_to: str

    @classmethod
    def default(cls, keys: Keys, queue: str = DEFAULT_QUEUE) -> Route:
        # kombu's Redis transport prefixes every key with the global key prefix; priority 0
        # messages go to the list named after the queue itself.
        return cls(
            queue=queue,
            list_key=f"{keys.broker_prefix}{queue}",
            origin=f"gen{os.getpid()}@{socket.gethostname()}",
            reply_to=str(uuid.uuid4()),
        )


def task_message(
    route: Route,
    task: str,
    task_id: str,
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    *,
    tenant: str | None = None,
    ignore_result: bool = True,
    group_id: str | None = None,
    group_index: int | None = None,
) -> str:
    """One task message (protocol 2, JSON body, base64 envelope) as the JSON kombu stores."""
    args_json, kwargs_json = json.dumps(list(args)), json.dumps(kwargs)
    body = f"[{args_json}, {kwargs_json}, {_EMBED_JSON}]".encode()
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": group_id,
        "group_index": group_index,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": _repr(tuple(args), len(args_json)),
        "kwargsrepr": _repr(kwargs, len(kwargs_json)),
        "origin": route.origin,
        "ignore_result": ignore_result,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
        PUBLISHED_HEADER: time.time(),
    }
    if tenant is not None:
        headers[TENANT_HEADER] = tenant
    envelope = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": route.reply_to,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": route.queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope)


REPR_LIMIT = 1024  # Celery's argsrepr_maxsize and kwargsrepr_maxsize
REPR_LEVELS = 4  # Celery's task_repr_maxlevels


def _repr(value: Any, size: int) -> str:
    """Celery's bounded repr; a plain repr when the JSON (``size`` bytes) shows it is short."""
    if size < REPR_LIMIT // 2:
        return repr(value)
    return str(saferepr(value, REPR_LIMIT, maxlevels=REPR_LEVELS))
