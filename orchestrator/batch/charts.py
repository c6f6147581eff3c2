"""Bar and step charts as inline SVG for the run report: no plotting library, no script, no
fonts to fetch.

A batch report must open offline from one file; three small charts do not justify shipping a
plotting library's JavaScript (plotly's is over 3 MB) or adding matplotlib to the install.
Colours come from the page's stylesheet (the classes ``bar``, ``step``, ``step-area``,
``marker`` and ``legend`` with their kind, ``grid``, ``axis``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from itertools import pairwise

WIDTH, HEIGHT = 900, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 48


@dataclass(frozen=True)
class Marker:
    """An event on a step chart's time axis: a tick with a dot, its kind a CSS class."""

    at: float
    kind: str
    label: str


@dataclass(frozen=True)
class Bar:
    """One bar: its span on the x axis and its height."""

    start: float
    end: float
    value: float


def histogram(values: Sequence[float], bins: int | None = None) -> list[Bar]:
    """Equal-width bins from the smallest value to the largest (one bin if they are equal)."""
    if not values:
        return []
    low, high = min(values), max(values)
    count = bins or max(5, min(30, round(math.sqrt(len(values)))))
    if high <= low:
        return [Bar(low, low, float(len(values)))]
    width = (high - low) / count
    heights = [0] * count
    for value in values:
        heights[min(count - 1, int((value - low) / width))] += 1
    return [Bar(low + i * width, low + (i + 1) * width, float(h)) for i, h in enumerate(heights)]


def rate_over_time(points: Sequence[tuple[float, int]], buckets: int = 40) -> list[Bar]:
    """Items per second in equal time buckets, from ``(seconds since start, items)`` points."""
    if not points:
        return []
    buckets = max(1, min(buckets, len(points) // 3))  # about three commits a bucket or more
    end = max(at for at, _ in points)
    span = max(end, 1e-3)
    width = span / buckets
    totals = [0] * buckets
    for at, items in points:
        totals[min(buckets - 1, int(at / width))] += items
    return [Bar(i * width, (i + 1) * width, total / width) for i, total in enumerate(totals)]


def _nice_step(top: float, ticks: int = 4) -> float:
    raw = top / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _label(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10 or value == int(value):
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _frame(title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]


def _empty(parts: list[str], note: str) -> str:
    parts.append(
        f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="note">'
        f"{escape(note)}</text></svg>"
    )
    return "".join(parts)


def _y_grid(parts: list[str], highest: float) -> float:
    """Horizontal grid lines with their labels; the axis' top value."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = highest or 1.0
    step = _nice_step(top)
    top = step * math.ceil(top / step)
    for tick in range(round(top / step) + 1):
        value = tick * step
        y = TOP + plot_h - value / top * plot_h
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(value)}</text>'
        )
    return top


def _x_axis(parts: list[str], low: float, span: float, x_label: str, y_label: str) -> None:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    base_y = TOP + plot_h
    for tick in range(6):
        value = low + span * tick / 5
        x = LEFT + plot_w * tick / 5
        parts.append(
            f'<text x="{x:.1f}" y="{base_y + 18}" text-anchor="middle">{_label(value)}</text>'
        )
    parts.append(
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{base_y}" y2="{base_y}" class="axis"/>'
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle" class="axis-label">'
        f"{escape(x_label)}</text>"
        f'<text transform="translate(14 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle" '
        f'class="axis-label">{escape(y_label)}</text>'
    )


def step_chart_svg(
    points: Sequence[tuple[float, float]],
    markers: Sequence[Marker] = (),
    *,
    x_label: str,
    y_label: str,
    title: str,
    gap: float | None = None,
    empty_note: str = "no data",
) -> str:
    """An SVG step chart of ``(x, value)`` points (each value holds until the next point),
    with ``markers`` as ticks; a pause longer than ``gap`` breaks the line."""
    parts = _frame(title)
    if not points:
        return _empty(parts, empty_note)
    ordered = sorted(points)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    base_y = TOP + plot_h
    top = _y_grid(parts, max(value for _, value in ordered))
    low = min([ordered[0][0], *(marker.at for marker in markers)])
    high = max([ordered[-1][0], *(marker.at for marker in markers)])
    span = (high - low) or 1.0

    def x_of(at: float) -> float:
        return LEFT + (at - low) / span * plot_w

    def y_of(value: float) -> float:
        return base_y - value / top * plot_h

    runs: list[list[tuple[float, float]]] = [[ordered[0]]]
    for previous, point in pairwise(ordered):
        if gap is not None and point[0] - previous[0] > gap:
            runs.append([])
        runs[-1].append(point)
    line, area = [], []
    for run in runs:
        start_x, start_y = x_of(run[0][0]), y_of(run[0][1])
        steps = "".join(f"H{x_of(at):.1f}V{y_of(value):.1f}" for at, value in run[1:])
        if len(run) == 1:
            steps = "h3"  # one sample: a short dash, not nothing
        line.append(f"M{start_x:.1f} {start_y:.1f}{steps}")
        end_x = x_of(run[-1][0]) + (3 if len(run) == 1 else 0)
        area.append(f"M{start_x:.1f} {base_y}V{start_y:.1f}{steps}H{end_x:.1f}V{base_y}Z")
    parts.append(f'<path d="{"".join(area)}" class="step-area"/>')
    parts.append(f'<path d="{"".join(line)}" class="step"/>')
    for marker in markers:
        x = x_of(marker.at)
        parts.append(
            f'<g class="marker {escape(marker.kind)}"><title>{escape(marker.label)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + 6}" y2="{base_y}"/>'
            f'<circle cx="{x:.1f}" cy="{TOP + 6}" r="5"/></g>'
        )
    kinds = sorted({marker.kind for marker in markers})
    for position, kind in enumerate(reversed(kinds)):
        x = LEFT + plot_w - 70 * (position + 1)
        parts.append(
            f'<g class="legend {escape(kind)}"><circle cx="{x + 8}" cy="{TOP - 6}" r="5"/></g>'
            f'<text x="{x + 18}" y="{TOP - 2}">{escape(kind)}</text>'
        )
    _x_axis(parts, low, span, x_label, y_label)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart_svg(bars: Sequence[Bar], *, x_label: str, y_label: str, title: str) -> str:
    """An SVG bar chart with axes, ticks and labels (an empty-data note when there are none)."""
    parts = _frame(title)
    if not bars:
        return _empty(parts, "no data")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    base_y = TOP + plot_h
    top = _y_grid(parts, max(bar.value for bar in bars))
    low, high = bars[0].start, bars[-1].end
    slot = plot_w / len(bars)
    for index, bar in enumerate(bars):
        height = bar.value / top * plot_h
        x = LEFT + index * slot
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{base_y - height:.1f}" width="{max(slot - 2, 1):.1f}" '
            f'height="{height:.1f}" class="bar"><title>{_label(bar.start)}-{_label(bar.end)}: '
            f"{_label(bar.value)}</title></rect>"
        )
    _x_axis(parts, low, (high - low) or 1.0, x_label, y_label)
    parts.append("</svg>")
    return "".join(parts)
