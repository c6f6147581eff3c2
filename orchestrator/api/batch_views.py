"""Batch runs as the API shows them: a run's view, its progress and its links."""

from __future__ import annotations

from typing import Any

from orchestrator.batch.record import RunRecord


def links(run_id: str) -> dict[str, str]:
    base = f"/v1/batches/{run_id}"
    return {
        "self": base,
        "results": f"{base}/results",
        "events": f"{base}/events",
        "cancel": f"{base}/cancel",
    }


def items_per_s(record: RunRecord) -> float | None:
    """The finished session's rate, or the rate so far of a running one."""
    if record.elapsed_s and record.items_run is not None:
        return round(record.items_run / record.elapsed_s, 1)
    elapsed = record.updated_at - record.created_at
    if record.done_items and elapsed > 0:
        return round(record.done_items / elapsed, 1)
    return None


def run_view(record: RunRecord) -> dict[str, Any]:
    return {
        "id": record.run_id,
        "status": record.status,
        "skill": record.skill,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "items": record.total_items,
        "done_items": record.done_items,
        "failed_items": record.failed_items,
        "cache_hits": record.cache_hits,
        "items_per_s": items_per_s(record),
        "elapsed_s": record.elapsed_s,
        "error": record.error,
        "result": record.result,
        "links": links(record.run_id),
    }


def progress_view(record: RunRecord) -> dict[str, Any]:
    return {
        "done": record.done_items,
        "failed": record.failed_items,
        "total": record.total_items,
        "status": record.status,
        "cache_hits": record.cache_hits,
        "items_per_s": items_per_s(record),
    }
