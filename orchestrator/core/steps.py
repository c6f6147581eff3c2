"""What each step of a finished job produced: its items' outcomes, and a summary per step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from workers.ledger import Ledger

FIRST_RESULTS = 3  # results shown per step
PREVIEW_CHARS = 200  # a longer string in a shown result is cut
PREVIEW_ITEMS = 5  # a longer list in a shown result is cut


def job_outcomes(ledger: Ledger, job_id: str) -> Iterator[dict[str, Any]]:
    """Every item's outcome in plan order: ``{"step", "skill", "index", "item", "ok", ...}``.

    ``index`` counts items within the step; a success carries ``result``, a failure ``error``
    and ``type``. Items of a task with no recorded outcome are reported as not run.
    """
    specs = ledger.task_specs(job_id)
    results = ledger.results(job_id)
    position: dict[int, int] = {}
    for task_id in sorted(specs, key=_task_order):
        spec = specs[task_id]
        step = int(spec.get("step", 0)) + 1
        outcome = results.get(task_id)
        entries = outcome if isinstance(outcome, list) else []
        for offset, item in enumerate(spec.get("items", [])):
            index = position.get(step, 0)
            position[step] = index + 1
            line: dict[str, Any] = {"step": step, "skill": spec.get("skill"), "index": index}
            line["item"] = item
            entry = entries[offset] if offset < len(entries) else None
            if not isinstance(entry, dict):
                line.update(ok=False, error="no outcome recorded for this item", type="NotRun")
            elif entry.get("ok"):
                line.update(ok=True, result=entry.get("value"))
            else:
                line.update(ok=False, error=entry.get("error"), type=entry.get("type", "Error"))
            yield line


def summarize_steps(
    outcomes: Iterator[dict[str, Any]], first: int = FIRST_RESULTS
) -> list[dict[str, Any]]:
    """Per step: its skill, items, succeeded, failed and the first results (shortened)."""
    steps: dict[int, dict[str, Any]] = {}
    for line in outcomes:
        summary = steps.setdefault(
            line["step"],
            {
                "step": line["step"],
                "skill": line["skill"],
                "items": 0,
                "succeeded": 0,
                "failed": 0,
                "first_results": [],
            },
        )
        summary["items"] += 1
        if line["ok"]:
            summary["succeeded"] += 1
            if len(summary["first_results"]) < first:
                summary["first_results"].append(preview(line["result"]))
        else:
            summary["failed"] += 1
    return [steps[number] for number in sorted(steps)]


def preview(value: Any) -> Any:
    """``value`` with long strings and lists cut, for showing (``--out`` keeps it whole)."""
    if isinstance(value, str) and len(value) > PREVIEW_CHARS:
        return value[:PREVIEW_CHARS] + f"... ({len(value)} chars)"
    if isinstance(value, list):
        shown = [preview(element) for element in value[:PREVIEW_ITEMS]]
        if len(value) > PREVIEW_ITEMS:
            shown.append(f"... ({len(value)} in all)")
        return shown
    if isinstance(value, dict):
        return {key: preview(element) for key, element in value.items()}
    return value


def _task_order(task_id: str) -> tuple[int, str]:
    suffix = task_id.rpartition(".")[2]
    return (int(suffix), task_id) if suffix.isdigit() else (1 << 62, task_id)
