"""Worker-side memory probe for the D3 memory study (test-only; nothing registers it).

Loaded into a real worker with ``celery worker -I tests.reliability.memprobe`` and switched on by
``VICTOR_MEMPROBE_DIR``. Every process of the worker (the main process at import, each prefork
child on ``worker_process_init``) writes ``pids/<pid>`` with its role and installs a SIGUSR2
handler (Celery uses SIGUSR2 only when ``CELERY_RDBSIG`` is set). On SIGUSR2 the process reads
``request.json`` (``{"tag": ..., "start_tracing": frames, "snapshot": bool, "trim": bool}``);
``start_tracing`` starts tracemalloc there and then (so a later snapshot holds exactly what was
allocated since and is still alive, without slowing the warm-up); then it writes
``stats-<pid>-<tag>.json``: RSS and smaps_rollup, glibc ``mallinfo2``, allocated blocks, gc
counts, object counts by type, tracemalloc's traced memory; with ``snapshot`` (and tracemalloc
on, e.g. ``PYTHONTRACEMALLOC=10`` in the worker's environment) it dumps
``snap-<pid>-<tag>.pickle``; with ``trim`` it records RSS before and after ``gc.collect()`` and
``malloc_trim(0)`` (how much of the RSS is free memory the allocator kept).

Signal only pids listed under ``pids/``: SIGUSR2's default action ends a process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import signal
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

DIR = os.environ.get("VICTOR_MEMPROBE_DIR")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def mallinfo() -> dict[str, int] | None:
    """glibc's mallinfo2 (main and thread arenas together), in bytes."""
    if _LIBC is None or not hasattr(_LIBC, "mallinfo2"):
        return None
    _LIBC.mallinfo2.restype = _MallInfo2
    info = _LIBC.mallinfo2()
    return {name: int(getattr(info, name)) for name, _ in _MallInfo2._fields_}


def _proc_kb(path: str, fields: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(path).read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in fields:
                out[name] = int(rest.split()[0])
    except OSError:
        pass
    return out


def rss_kb() -> int:
    return _proc_kb("/proc/self/status", ("VmRSS",)).get("VmRSS", 0)


def stats(top_types: int = 300) -> dict[str, Any]:
    """What this process holds right now (cheap enough to run under load)."""
    objects = gc.get_objects()
    by_type = Counter(type(obj).__qualname__ for obj in objects)
    count = len(objects)
    del objects
    traced = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else None
    return {
        "pid": os.getpid(),
        "time": time.time(),
        "status_kb": _proc_kb("/proc/self/status", ("VmRSS", "RssAnon", "RssFile", "VmHWM")),
        "smaps_rollup_kb": _proc_kb(
            "/proc/self/smaps_rollup",
            ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Dirty", "Anonymous"),
        ),
        "mallinfo2": mallinfo(),
        "allocated_blocks": sys.getallocatedblocks(),
        "gc_count": gc.get_count(),
        "gc_objects": count,
        "types": dict(by_type.most_common(top_types)),
        "tracemalloc": None if traced is None else {"current": traced[0], "peak": traced[1]},
        "tracemalloc_overhead": tracemalloc.get_tracemalloc_memory()
        if tracemalloc.is_tracing()
        else None,
    }


def _handle(signum: int, frame: Any) -> None:
    assert DIR is not None
    directory = Path(DIR)
    try:
        request = json.loads((directory / "request.json").read_text())
    except (OSError, ValueError):
        request = {"tag": f"t{int(time.time())}"}
    tag = str(request.get("tag", "x"))
    pid = os.getpid()
    started = time.monotonic()
    record: dict[str, Any] = {"tag": tag, "role": _role}
    frames = int(request.get("start_tracing") or 0)
    if frames and not tracemalloc.is_tracing():
        tracemalloc.start(frames)  # from now on: what is allocated and still alive later
        record["tracing_started"] = frames
    if request.get("snapshot") and tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        snapshot.dump(str(directory / f"snap-{pid}-{tag}.pickle"))
        del snapshot
    if request.get("trim"):
        before = rss_kb()
        gc.collect()
        after_gc = rss_kb()
        trimmed = bool(_LIBC.malloc_trim(0)) if _LIBC is not None else None
        record["trim"] = {
            "rss_kb_before": before,
            "rss_kb_after_gc": after_gc,
            "rss_kb_after_trim": rss_kb(),
            "released": trimmed,
        }
    record.update(stats())
    record["probe_s"] = round(time.monotonic() - started, 3)
    path = directory / f"stats-{pid}-{tag}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


_role = "main"


def install(role: str) -> None:
    """Install the SIGUSR2 handler in this process and announce its pid."""
    global _role
    if DIR is None:
        return
    _role = role
    signal.signal(signal.SIGUSR2, _handle)
    pids = Path(DIR) / "pids"
    pids.mkdir(parents=True, exist_ok=True)
    (pids / str(os.getpid())).write_text(
        json.dumps({"role": role, "ppid": os.getppid(), "tracing": tracemalloc.is_tracing()})
    )


if DIR is not None:
    from celery import signals as _signals

    install("main")

    @_signals.worker_process_init.connect(weak=False)
    def _child_init(**_: Any) -> None:
        install("child")
