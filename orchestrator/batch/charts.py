"""Bar charts as inline SVG for the run report: no plotting library, no script, no fonts to fetch.

A batch report must open offline from one file; two bar charts do not justify shipping a
plotting library's JavaScript (plotly's is over 3 MB) or adding matplotlib to the install.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 900, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 48


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


def bar_chart_svg(bars: Sequence[Bar], *, x_label: str, y_label: str, title: str) -> str:
    """An SVG bar chart with axes, ticks and labels (an empty-data note when there are none)."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    base_y = TOP + plot_h
    if not bars:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="note">'
            "no data</text></svg>"
        )
        return "".join(parts)
    top = max(bar.value for bar in bars) or 1.0
    step = _nice_step(top)
    top = step * math.ceil(top / step)
    low, high = bars[0].start, bars[-1].end
    span = (high - low) or 1.0
    slot = plot_w / len(bars)
    for tick in range(round(top / step) + 1):
        value = tick * step
        y = base_y - value / top * plot_h
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(value)}</text>'
        )
    for index, bar in enumerate(bars):
        height = bar.value / top * plot_h
        x = LEFT + index * slot
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{base_y - height:.1f}" width="{max(slot - 2, 1):.1f}" '
            f'height="{height:.1f}" class="bar"><title>{_label(bar.start)}-{_label(bar.end)}: '
            f"{_label(bar.value)}</title></rect>"
        )
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
        f'class="axis-label">{escape(y_label)}</text></svg>'
    )
    return "".join(parts)
