"""A worker's own figures, taken in its main process at each metrics flush.

What only the main process knows: its pool (type, whether it can resize, its size now, the
bounds it was started with), the requests it holds (active, reserved), and the memory and CPU
of its whole process tree (the main process, pool children and anything they started), read
with psutil so a child removed by ``pool_shrink`` stops counting at once. The pool size comes
from the pool object (``num_processes``), which follows ``pool_grow``/``pool_shrink``;
``inspect stats`` keeps the size the worker started with. ``live_slots`` is what runs now:
prefork's live children (a grow starts them only at the pool's next 5 s maintenance).
"""

from __future__ import annotations

from typing import Any

from workers.core.settings import Settings

_POOL_TYPES = {
    "celery.concurrency.prefork": "prefork",
    "celery.concurrency.thread": "threads",
    "celery.concurrency.solo": "solo",
    "celery.concurrency.eventlet": "eventlet",
    "celery.concurrency.gevent": "gevent",
    "workers.pools.threads": "threads",
    "workers.pools.prefork": "prefork",
}


def pool_type(pool: Any) -> str:
    """The pool's alias (prefork, threads, solo, ...), or its class path when unknown."""
    cls = type(pool)
    return _POOL_TYPES.get(cls.__module__, f"{cls.__module__}:{cls.__qualname__}")


def pool_resizable(pool: Any) -> bool:
    """Whether ``pool_grow``/``pool_shrink`` can change this pool (not solo, not Celery threads)."""
    return callable(getattr(pool, "grow", None)) and callable(getattr(pool, "shrink", None))


class WorkerSampler:
    """Reads a running worker's pool and process tree; called by the reporter at each flush."""

    def __init__(self, consumer: Any, hostname: str, settings: Settings) -> None:
        self.consumer = consumer
        self.hostname = hostname
        self.settings = settings
        self.pool = getattr(consumer, "pool", None)
        controller = getattr(consumer, "controller", None)
        self.autoscaler = getattr(controller, "autoscaler", None)
        self.started_size = self.pool_size()
        self.started_bounds = (
            (int(self.autoscaler.min_concurrency), int(self.autoscaler.max_concurrency))
            if self.autoscaler is not None
            else None
        )
        self._processes: dict[int, Any] = {}

    def pool_size(self) -> int:
        """The pool's size now (0 while a pool restarts)."""
        try:
            return int(self.pool.num_processes) if self.pool is not None else 0
        except Exception:  # a pool between restarts has no size for a moment
            return 0

    def __call__(self) -> dict[str, Any]:
        from celery.worker import state

        active = len(state.active_requests)
        received = len(state.reserved_requests)
        settings = self.settings
        figures: dict[str, Any] = {
            "hostname": self.hostname,
            "pool_size": self.pool_size(),
            "active": active,
            "reserved": max(0, received - active),
            "pool_type": pool_type(self.pool),
            "resizable": int(self.pool is not None and pool_resizable(self.pool)),
            "started_size": self.started_size,
            "tuner_enabled": int(settings.tuner_enabled),
            "tuner_min": settings.tuner_min_concurrency,
            "tuner_max": settings.tuner_max_concurrency,
        }
        if self.autoscaler is not None and self.started_bounds is not None:
            figures["autoscale_min"], figures["autoscale_max"] = self.started_bounds
            figures["autoscale_limit"] = int(self.autoscaler.max_concurrency)
        tree = self.tree()
        figures.update(tree)
        # Prefork starts the children of a grow at its next maintenance (every 5 s): until
        # then the pool runs fewer slots than its size says.
        children = tree.pop("children", None)
        prefork = figures["pool_type"] == "prefork"
        figures["live_slots"] = (
            children if prefork and children is not None else figures["pool_size"]
        )
        return figures

    def tree(self) -> dict[str, Any]:
        """RSS (MB) and CPU (%, summed over cores) of this process and all its descendants."""
        import psutil

        try:
            main = psutil.Process()
            members = [main, *main.children(recursive=True)]
        except psutil.Error:
            return {}
        rss = 0.0
        cpu = 0.0
        children = 0
        seen: dict[int, Any] = {}
        for process in members:
            known = self._processes.get(process.pid, process)
            try:
                rss += known.memory_info().rss
                # The first reading of a process is 0.0 (psutil needs two); keep the objects.
                cpu += known.cpu_percent(None)
                if known is not main and known.ppid() == main.pid and known.status() != "zombie":
                    children += 1
            except psutil.Error:
                continue
            seen[process.pid] = known
        self._processes = seen
        return {
            "rss_mb": round(rss / 1_048_576, 2),
            "cpu_percent": round(cpu, 1),
            "tree_processes": len(seen),
            "children": children,
        }
