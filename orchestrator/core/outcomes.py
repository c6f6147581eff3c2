"""What went wrong in a job: its failed items grouped by reason, for every front end.

The CLI prints it, ``--json`` and the API carry it; a job whose items failed is never shown as
``succeeded`` (the ledger sets ``partial`` or ``failed``).
"""

from __future__ import annotations

import re
from typing import Any

from workers.ledger import Ledger

EXAMPLES = 5  # failed items shown per reason


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\b\d+(\.\d+)?\b")


def reason_of(error: str) -> str:
    """The reason of an error line: its first clause with quoted values and numbers elided,
    so items that failed the same way group together (the examples keep the full lines)."""
    head = _NUMBER.sub("N", _QUOTED.sub("'...'", error.split(";", 1)[0]))
    return head if len(head) <= 160 else head[:157] + "..."


def summarize_failures(outcomes: list[Any], limit: int = EXAMPLES) -> dict[str, Any]:
    """``{"count", "by_reason": [{"reason", "type", "count", "examples": [...]}]}``.

    ``outcomes`` are task outcomes as the ledger records them (lists of per-item dicts).
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    count = 0
    for outcome in outcomes:
        for entry in outcome if isinstance(outcome, list) else []:
            if not isinstance(entry, dict) or entry.get("ok"):
                continue
            count += 1
            error = str(entry.get("error", ""))
            kind = str(entry.get("type", "Error"))
            group = groups.setdefault(
                (kind, reason_of(error)),
                {"reason": reason_of(error), "type": kind, "count": 0, "examples": []},
            )
            group["count"] += 1
            if len(group["examples"]) < limit:
                group["examples"].append({"item": entry.get("item"), "error": error})
    ordered = sorted(groups.values(), key=lambda group: -int(group["count"]))
    return {"count": count, "by_reason": ordered}


def job_failures(ledger: Ledger, job_id: str, limit: int = EXAMPLES) -> dict[str, Any]:
    """The failed items of a job from its recorded task outcomes."""
    outcomes: list[Any] = []
    after = 0
    while True:
        events = ledger.events(job_id, after, 1000)
        outcomes.extend(event.outcome for event in events)
        if len(events) < 1000:
            break
        after += len(events)
    return summarize_failures(outcomes, limit)
