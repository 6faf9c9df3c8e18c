"""Charts drawn on the server as SVG: no chart library, no script, nothing to download.
Every figure is also in a table or text beside it, for screen readers and for reading
exact values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value_label: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    baseline: float
    bars: list[Bar]
    max_label: str
    gridlines: list[float]


def bar_chart(
    values: Sequence[Decimal],
    labels: Sequence[str],
    value_labels: Sequence[str],
    *,
    max_label: str,
    width: int = 600,
    height: int = 180,
) -> BarChart:
    """Bars for ``values`` scaled to the largest, in a ``width`` by ``height`` viewBox
    (the SVG scales to its container). A zero value has a 1-unit stub so the week shows."""
    top, bottom = 12.0, 2.0
    plot = height - top - bottom
    peak = max((v for v in values), default=Decimal(0)) or Decimal(1)
    slot = width / max(1, len(values))
    bar_width = slot * 0.64
    bars = []
    for i, (value, label, value_label) in enumerate(zip(values, labels, value_labels, strict=True)):
        h = max(1.0, float(value / peak) * plot) if value > 0 else 1.0
        bars.append(
            Bar(
                x=round(i * slot + (slot - bar_width) / 2, 2),
                y=round(top + plot - h, 2),
                width=round(bar_width, 2),
                height=round(h, 2),
                label=label,
                value_label=value_label,
            )
        )
    grid = [round(top + plot * f, 2) for f in (0.0, 0.5)]
    return BarChart(width=width, height=height, baseline=top + plot, bars=bars, max_label=max_label, gridlines=grid)


@dataclass(frozen=True)
class Segment:
    name: str
    count: int
    x: float
    width: float


def stacked_bar(counts: Sequence[tuple[str, int]], *, width: int = 100) -> list[Segment]:
    """One bar split into segments by count (a bill's paid / acknowledged / pending /
    disputed / overdue): each segment's share of ``width``; empty segments left out."""
    total = sum(count for _, count in counts)
    if total <= 0:
        return []
    segments, x = [], 0.0
    for name, count in counts:
        if count <= 0:
            continue
        w = width * count / total
        segments.append(Segment(name=name, count=count, x=round(x, 3), width=round(w, 3)))
        x += w
    return segments
