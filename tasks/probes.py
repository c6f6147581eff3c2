"""noop, sleep, effect and leak: probe skills for benchmarks, health checks and fault tests."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from tasks.catalog import EffectInput, LeakInput, NoopInput, SleepInput
from workers.core.errors import SkillError
from workers.core.settings import Mode
from workers.skills.spec import SkillContext

_local_effects: set[str] = set()
_local_lock = threading.Lock()


def noop(params: NoopInput, context: SkillContext) -> Any:
    """Return the value unchanged."""
    return params.value


def sleep(params: SleepInput, context: SkillContext) -> Any:
    """Sleep ``ms`` milliseconds (simulated I/O), then return the value."""
    time.sleep(params.ms / 1000)
    return params.value


def _audit_append(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line; O_APPEND writes under PIPE_BUF do not interleave."""
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _apply_effect(context: SkillContext, key: str) -> bool:
    """The once-only side effect: ``SET NX effect:{key}``; True when this call applied it."""
    settings = context.settings
    if settings.mode is not Mode.DISTRIBUTED:
        with _local_lock:
            if key in _local_effects:
                return False
            _local_effects.add(key)
            return True
    from workers.core.keys import Keys
    from workers.core.redis_client import redis_client, translated

    with translated("applying a probe side effect"):
        applied = redis_client(settings.state_url).set(
            Keys(settings.key_prefix).effect(key),
            str(os.getpid()),
            nx=True,
            ex=settings.result_expires_s,
        )
    return bool(applied)


def _worker_name() -> str:
    from celery import current_task

    request = getattr(current_task, "request", None)
    return str(getattr(request, "hostname", None) or f"pid{os.getpid()}")


def effect(params: EffectInput, context: SkillContext) -> Any:
    """Record the execution in the oracle, apply the side effect once, return a value."""
    path = context.settings.audit_path
    if path is None:
        raise SkillError(
            "the effect probe needs an audit oracle file: set VICTOR_AUDIT_PATH "
            "(fault tests set it to a file of their own)"
        )
    record: dict[str, Any] = {
        "task_key": params.key,
        "worker": _worker_name(),
        "pid": os.getpid(),
        "start": time.time(),
    }
    _audit_append(path, {**record, "kind": "start"})
    if params.poison:
        os.kill(os.getpid(), signal.SIGKILL)
    if params.ms:
        time.sleep(params.ms / 1000)
    applied = _apply_effect(context, params.key)
    value: Any = params.key
    if params.results is not None:
        value = {"key": params.key, "results": len(params.results)}
    elif params.nondeterministic:
        value = {"key": params.key, "pid": os.getpid(), "at": time.time()}
    _audit_append(
        path, {**record, "kind": "end", "end": time.time(), "outcome": "ok", "effect": applied}
    )
    return value


_leaked: list[bytearray] = []


def leak(params: LeakInput, context: SkillContext) -> Any:
    """Allocate ``mb`` MB and touch every page; keep it for the life of the process (a leak)
    or free it before returning (``keep=False``: a spike that raises only the peak RSS).

    Returns this process's pid and the MB it holds, so a test can tell processes apart.
    """
    if params.mb:
        block = bytearray(b"\x01") * (params.mb * 1_048_576)
        if params.keep:
            _leaked.append(block)
        del block
    if params.fail:
        raise SkillError(f"leak probe asked to fail after keeping {params.mb} MB")
    return {
        "pid": os.getpid(),
        "held_mb": sum(len(kept) for kept in _leaked) // 1_048_576,
        "value": params.value,
    }
