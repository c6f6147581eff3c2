"""Apply a pool size to one worker through Celery's remote control, addressed to it alone.

* ``pool`` workers (prefork, and ``workers.pools.threads:ResizableThreadPool``): ``pool_grow``
  by the difference; ``pool_shrink`` one slot per command. Prefork shrinks only idle children
  and refuses ("all processes busy") when none is idle, and a multi-slot shrink that stops
  half-way leaves the consumer's prefetch count unadjusted; one slot at a time keeps prefetch
  and pool in step, and the size reached is known exactly. Under a backlog a child is idle only
  between two tasks, so a refused shrink is retried every 20 ms for up to ``busy_retry_s``.
* ``autoscale`` workers (``--autoscale``, which refuse grow/shrink): the ``autoscale`` command
  with ``max`` = the target, so Celery's autoscaler works under the tuner's ceiling.

Every call waits for the worker's reply (``reply=True``); no reply is a failure, and the size
reported by the worker's next metrics flush settles what happened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from kombu.exceptions import OperationalError

from orchestrator.tuner.sample import AUTOSCALE, POOL
from workers.core.redis_client import REDIS_ERRORS

CONTROL_ERRORS: tuple[type[BaseException], ...] = (OperationalError, *REDIS_ERRORS)


@dataclass(frozen=True)
class Actuation:
    """What a resize did: the size the worker is at now, and what it answered."""

    size: int
    ok: bool
    detail: str


class Actuator(Protocol):
    """Something that resizes a worker's pool."""

    def resize(self, worker: str, mode: str, current: int, target: int, floor: int) -> Actuation:
        """Move ``worker`` from ``current`` to ``target`` slots (``floor``: its minimum)."""


def _answer(replies: Any, worker: str) -> tuple[bool, str]:
    """(ok, text) of one worker's reply to a control command."""
    for reply in replies or []:
        if isinstance(reply, dict) and worker in reply:
            body = reply[worker]
            if isinstance(body, dict) and "ok" in body:
                return True, str(body["ok"])
            if isinstance(body, dict) and "error" in body:
                return False, str(body["error"])
            return False, f"unexpected reply {body!r}"
    return False, "no reply"


class ControlActuator:
    """Resizes pools with ``pool_grow``/``pool_shrink``/``autoscale`` sent to one worker."""

    def __init__(self, app: Any, timeout_s: float = 2.0, busy_retry_s: float = 1.0) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.busy_retry_s = busy_retry_s

    def _send(self, command: str, worker: str, **arguments: Any) -> tuple[bool, str]:
        try:
            replies = self.app.control.broadcast(
                command,
                arguments=arguments,
                destination=[worker],
                reply=True,
                timeout=self.timeout_s,
            )
        except CONTROL_ERRORS as exc:
            return False, f"broker unreachable: {exc}"
        ok, text = _answer(replies, worker)
        if text == "no reply":
            text = f"no reply from {worker} within {self.timeout_s:g} s"
        return ok, text

    def resize(self, worker: str, mode: str, current: int, target: int, floor: int) -> Actuation:
        if target == current:
            return Actuation(current, True, "unchanged")
        if mode == AUTOSCALE:
            ok, text = self._send("autoscale", worker, max=target, min=min(floor, target))
            return Actuation(target if ok else current, ok, f"autoscale: {text}")
        if mode != POOL:
            return Actuation(current, False, f"a {mode} pool cannot be resized")
        if target > current:
            ok, text = self._send("pool_grow", worker, n=target - current)
            return Actuation(target if ok else current, ok, f"pool_grow: {text}")
        size = current
        deadline = time.monotonic() + self.busy_retry_s
        while size > target:
            ok, text = self._send("pool_shrink", worker, n=1)
            if not ok and "busy" in text and time.monotonic() < deadline:
                time.sleep(0.02)  # a child goes idle between two tasks: try again then
                continue
            if not ok:
                done = f"shrank {current - size} of {current - target}"
                return Actuation(size, False, f"pool_shrink: {text} ({done})")
            size -= 1
        return Actuation(size, True, f"pool_shrink: {current - target} slot(s)")
