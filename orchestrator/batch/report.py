"""A run's HTML report: one self-contained page (inline CSS and SVG, no scripts or fetches).

Everything comes from the run's record and its files, so ``victor batch report RUN_ID`` writes
the same page after the run as ``--report`` does at its end: the summary, failures by reason
with the first failed items, a histogram of chunk times, throughput over time, the fleet's pool
size over time with the tuner's resizes marked, and the paths.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from orchestrator.batch.charts import (
    Marker,
    bar_chart_svg,
    histogram,
    rate_over_time,
    step_chart_svg,
)
from orchestrator.batch.fleet_samples import (
    SAMPLE_EVERY_S,
    FleetSamples,
    read_fleet_samples,
)
from orchestrator.batch.output import fleet_path_for
from orchestrator.batch.record import RunRecord

FAILURES_SHOWN = 100
SLOWEST_SHOWN = 10
_NUMBER = re.compile(r"\d+")
REASON_CHARS = 160
DECISIONS_SHOWN = 50
APPLIED = frozenset({"applied", "partly"})  # the pool changed (see TunerRunner._apply)


@dataclass
class ReportData:
    """What the page shows, read from a run's record and files."""

    record: RunRecord
    chunk_ms: list[float] = field(default_factory=list)
    slowest: list[dict[str, Any]] = field(default_factory=list)  # chunk lines, slowest first
    commits: list[tuple[float, int]] = field(default_factory=list)  # (s since first, items)
    reasons: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    fleet: FleetSamples = field(default_factory=FleetSamples)

    @property
    def succeeded(self) -> int:
        return self.record.done_items - self.record.failed_items

    @property
    def items_per_s(self) -> float | None:
        record = self.record
        if not record.elapsed_s or record.items_run is None:
            return None
        return record.items_run / record.elapsed_s


def read_report_data(record: RunRecord) -> ReportData:
    """Read the chunk timings and the errors file of ``record`` (missing files: no rows)."""
    data = ReportData(record)
    chunks: dict[int, dict[str, Any]] = {}
    for line in _json_lines(record.timings):
        chunks[int(line.get("chunk", -1))] = line  # a chunk written again: the last line wins
    starts = [float(line["at"]) for line in chunks.values() if "at" in line]
    first = min(starts) if starts else 0.0
    timed = [line for line in chunks.values() if line.get("ms") is not None]
    data.chunk_ms = [float(line["ms"]) for line in timed]
    data.slowest = sorted(timed, key=lambda line: -float(line["ms"]))[:SLOWEST_SHOWN]
    for line in chunks.values():
        if "at" in line:
            data.commits.append((float(line["at"]) - first, int(line.get("items", 0))))
    data.fleet = read_fleet_samples(fleet_path_for(record.out))
    for line in _json_lines(record.errors):
        # Numbers (line, column, sizes) would make each bad line a reason of its own.
        text = _NUMBER.sub("N", str(line.get("error", "")))[:REASON_CHARS]
        reason = f"{line.get('type', 'Error')}: {text}"
        data.reasons[reason] += 1
        if len(data.failures) < FAILURES_SHOWN:
            data.failures.append(line)
    return data


def _json_lines(path: str | None) -> list[dict[str, Any]]:
    if not path or not os.path.exists(path):
        return []
    rows = []
    with open(path, "rb") as stream:
        for raw in stream:
            try:
                value = json.loads(raw)
            except ValueError:
                continue  # a line cut short by a kill
            if isinstance(value, dict):
                rows.append(value)
    return rows


def render_report(data: ReportData) -> str:
    """The page's HTML."""
    record = data.record
    rate = data.items_per_s
    hit_text = "unknown" if record.cache_hits is None else f"{record.cache_hits:,}"
    tiles = [
        ("items", f"{record.done_items:,}"),
        ("succeeded", f"{data.succeeded:,}"),
        ("failed", f"{record.failed_items:,}"),
        ("cache hits", hit_text),
        ("duration", "unknown" if record.elapsed_s is None else f"{record.elapsed_s:,.2f} s"),
        ("items/s", "unknown" if rate is None else f"{rate:,.0f}"),
    ]
    chunk_chart = bar_chart_svg(
        histogram(data.chunk_ms),
        x_label="chunk time, publish to commit (ms)",
        y_label="chunks",
        title="Chunk times",
    )
    rate_chart = bar_chart_svg(
        rate_over_time(data.commits),
        x_label="seconds since the first commit",
        y_label="items/s",
        title="Throughput over time",
    )
    status_class = {"succeeded": "ok", "partial": "warn"}.get(record.status, "bad")
    body = [
        f"<h1>Batch run <code>{escape(record.run_id)}</code> "
        f'<span class="status {status_class}">{escape(record.status)}</span></h1>',
        f'<p class="meta">skill <b>{escape(record.skill)}</b> over '
        f"<code>{escape(record.input)}</code>, started {_when(record.created_at)}, "
        f"last update {_when(record.updated_at)}</p>",
        '<div class="tiles">'
        + "".join(
            f'<div class="tile" data-name="{escape(name)}"><div class="value">{escape(value)}'
            f'</div><div class="name">{escape(name)}</div></div>'
            for name, value in tiles
        )
        + "</div>",
    ]
    if record.error:
        body.append(f'<p class="error">{escape(record.error)}</p>')
    body += [
        f"<h2>Chunk times <small>{len(data.chunk_ms):,} chunks"
        f"{_chunk_figures(data.chunk_ms)}</small></h2>",
        f'<div class="chart" id="chunk-times">{chunk_chart}</div>',
        "<h2>Throughput over time</h2>",
        f'<div class="chart" id="throughput">{rate_chart}</div>',
        _pool_html(data.fleet),
        _slowest_html(data),
        _failures_html(data),
        "<h2>Files</h2>",
        _table(
            ["file", "path"],
            [
                ["output", record.out],
                ["errors", record.errors],
                ["chunk timings", record.timings or ""],
                ["pool samples", fleet_path_for(record.out)],
            ],
        ),
    ]
    note = (
        "Duration, items/s and cache hits are the last driver session's (a resumed run "
        "counts from its resume). Cache hits count the response cache's hits meanwhile (on a "
        "fleet: every worker's, including other jobs running at the same time)."
    )
    body.append(f'<p class="note">{escape(note)}</p>')
    return _PAGE.format(title=escape(f"batch run {record.run_id}"), body="\n".join(body))


def write_report(record: RunRecord, path: str) -> str:
    """Write the report of ``record`` to ``path``; return the absolute path."""
    page = render_report(read_report_data(record))
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(page)
    return os.path.abspath(path)


def _chunk_figures(values: list[float]) -> str:
    if not values:
        return ""
    ordered = sorted(values)
    median = ordered[len(ordered) // 2]
    slowest = ordered[-1]
    return f", median {median:,.1f} ms, slowest {slowest:,.1f} ms"


def _pool_html(fleet: FleetSamples) -> str:
    """The pool-size step chart with the tuner's applied resizes marked, and their table."""
    first = fleet.first_at or 0.0
    resizes = fleet.decisions[:DECISIONS_SHOWN]
    markers = [
        Marker(
            float(decision["at"]) - first,
            str(decision.get("action")),
            f"{float(decision['at']) - first:,.1f} s {decision.get('worker')}: "
            f"{decision.get('current')}->{decision.get('target')} ({decision.get('rule')}) "
            f"{decision.get('reason')}",
        )
        for decision in resizes
        if decision.get("applied") in APPLIED
    ]
    chart = step_chart_svg(
        [(at - first, float(pool)) for at, pool in fleet.pool],
        markers,
        x_label="seconds since the run's first sample",
        y_label="pool size (slots)",
        title="Pool size over time",
        gap=5 * SAMPLE_EVERY_S,  # a resumed run: no line across the time nobody drove it
        empty_note="no pool samples recorded",
    )
    sizes = [pool for _, pool in fleet.pool]
    figures = (
        f"{len(sizes):,} samples, {min(sizes)}-{max(sizes)} slots, "
        f"{len(fleet.decisions):,} tuner resizes"
        if sizes
        else ""
    )
    parts = [
        f"<h2>Pool size over time <small>{figures}</small></h2>",
        f'<div class="chart" id="pool-size">{chart}</div>',
    ]
    if not fleet.decisions:
        note = "No tuner decision resized a worker while the run was driven."
        parts.append(f'<p class="meta">{escape(note)}</p>')
        return "".join(parts)
    rows = [
        [
            f"{float(decision['at']) - first:,.1f}",
            str(decision.get("worker", "")),
            f"{decision.get('current')} → {decision.get('target')}",
            str(decision.get("action", "")),
            str(decision.get("applied", "")),
            str(decision.get("rule", "")),
            str(decision.get("reason", ""))[:REASON_CHARS],
        ]
        for decision in resizes
    ]
    shown = f"first {len(rows)} of {len(fleet.decisions):,}"
    headers = ["s", "worker", "pool", "action", "outcome", "rule", "reason"]
    parts.append(f"<h3>Tuner decisions <small>{shown}</small></h3>")
    parts.append(_table(headers, rows, table_id="decisions"))
    return "".join(parts)


def _slowest_html(data: ReportData) -> str:
    if not data.slowest:
        return ""
    size = data.record.chunk_size
    rows = [
        [
            str(line["chunk"]),
            f"{line['chunk'] * size}-{line['chunk'] * size + int(line.get('items', 0)) - 1}",
            f"{float(line['ms']):,.1f}",
        ]
        for line in data.slowest
    ]
    return "<h2>Slowest chunks</h2>" + _table(
        ["chunk", "input indexes", "ms"], rows, table_id="slowest"
    )


def _failures_html(data: ReportData) -> str:
    if not data.reasons:
        return '<h2>Failures</h2><p class="none">No item failed.</p>'
    reasons = _table(
        ["items", "reason"], [[f"{n:,}", reason] for reason, n in data.reasons.most_common()]
    )
    rows = [
        [
            str(line.get("index", "")),
            str(line.get("line") or ""),
            str(line.get("type", "")),
            str(line.get("error", ""))[:REASON_CHARS],
            json.dumps(line.get("item", line.get("raw", "")), default=str)[:REASON_CHARS],
        ]
        for line in data.failures
    ]
    shown = f"first {len(rows)} of {data.record.failed_items:,}"
    return (
        f"<h2>Failures <small>by reason</small></h2>{reasons}"
        f"<h3>Failed items <small>{shown}</small></h3>"
        + _table(["index", "line", "type", "reason", "item"], rows, table_id="failures")
    )


def _table(headers: list[str], rows: list[list[str]], table_id: str = "") -> str:
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d232b;
  max-width: 960px; margin: 24px auto; padding: 0 20px; background: #fff; }}
h1 {{ font-size: 24px; margin: 0 0 4px; }} h2 {{ font-size: 18px; margin: 28px 0 8px; }}
h3 {{ font-size: 15px; margin: 18px 0 6px; }} small {{ color: #5d6875; font-weight: normal; }}
code {{ font: 13px ui-monospace, monospace; background: #f1f3f5; padding: 1px 4px; }}
.meta, .note {{ color: #5d6875; }} .note {{ font-size: 13px; margin-top: 24px; }}
.status {{ font-size: 14px; padding: 2px 10px; border-radius: 12px; vertical-align: middle; }}
.ok {{ background: #d8f3dc; color: #1b5e20; }} .warn {{ background: #fff3bf; color: #7a5b00; }}
.bad {{ background: #ffe3e3; color: #a51111; }}
.error {{ background: #fff3bf; padding: 8px 12px; border-left: 4px solid #f0b400; }}
.tiles {{ display: grid; grid-template-columns: repeat(6, 1fr); gap: 10px; margin: 16px 0; }}
.tile {{ border: 1px solid #dde2e8; border-radius: 8px; padding: 10px 12px; }}
.tile .value {{ font-size: 22px; font-weight: 600; }}
.tile .name {{ color: #5d6875; font-size: 13px; }}
.chart {{ border: 1px solid #dde2e8; border-radius: 8px; padding: 8px; }}
.chart svg {{ width: 100%; height: auto; display: block; }}
svg text {{ font: 12px system-ui, sans-serif; fill: #3b4653; }}
svg .axis-label {{ font-size: 13px; fill: #1d232b; }} svg .note {{ font-size: 16px; }}
svg .bar {{ fill: #3572b0; }} svg .step {{ fill: none; stroke: #6741d9; stroke-width: 2.5; }}
svg .step-area {{ fill: #e5dbff; }} svg .marker line {{ stroke-width: 1.5; stroke-dasharray: 4 3; }}
svg .grow line {{ stroke: #2b8a3e; }} svg .grow circle {{ fill: #2b8a3e; }}
svg .shrink line {{ stroke: #d9480f; }} svg .shrink circle {{ fill: #d9480f; }}
svg .grid {{ stroke: #e9ecef; }} svg .axis {{ stroke: #5d6875; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
th, td {{ text-align: left; padding: 5px 8px; border-bottom: 1px solid #e9ecef;
  vertical-align: top; word-break: break-word; }}
th {{ background: #f6f8fa; }} .none {{ color: #1b5e20; }}
#failures td:nth-child(-n+3), #decisions td:nth-child(-n+6), th {{ white-space: nowrap; }}
</style></head>
<body>
{body}
</body></html>
"""
