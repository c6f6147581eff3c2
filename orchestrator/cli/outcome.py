"""How a finished job is shown: its status, its failed items grouped by reason, its exit code."""

from __future__ import annotations

from typing import Any

import typer

from orchestrator.cli.support import console, exit_code_for_status

SHOWN_REASONS = 5


def print_outcome(job: dict[str, Any]) -> None:
    """One line for the job's end; for failed items, the reasons and a few examples each."""
    status = job["status"]
    colour = {"succeeded": "green", "partial": "yellow"}.get(status, "red")
    line = f"[{colour}]job {job['job_id']} {status}[/{colour}]"
    if job.get("items"):
        line += f": {job['items'] - job.get('failed_items', 0)} of {job['items']} items succeeded"
    if job.get("error"):
        line += f" ({job['error']})"
    console.print(line)
    failures = job.get("failures") or {}
    for group in failures.get("by_reason", [])[:SHOWN_REASONS]:
        console.print(f"  {group['count']} x {group['type']}: {group['reason']}")
        for example in group["examples"][:2]:
            console.print(f"      item {example['item']}", highlight=False, markup=False)
    hidden = len(failures.get("by_reason", [])) - SHOWN_REASONS
    if hidden > 0:
        console.print(f"  ... and {hidden} more reasons (--json shows them all)")


def exit_with_status(job: dict[str, Any]) -> None:
    """Exit 0 when the job succeeded, 3 when partial, 1 when it failed (README: Exit codes)."""
    code = exit_code_for_status(job["status"])
    if code:
        raise typer.Exit(code)
