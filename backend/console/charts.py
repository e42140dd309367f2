"""Charts drawn on the server as SVG geometry: no script, no CDN, nothing to download.

Each function turns a series into a ``Chart``: bars, lines and ticks in a fixed ``viewBox``
(the page scales it to its width), a legend, and the figures as a table for anyone who would
rather read numbers. The template ``console/_charts.html`` draws it; colours come from the
stylesheet (``.s0`` … ``.s9``), so the Content-Security-Policy needs no inline style.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 78, 10, 14, 34
PALETTE = 10
MAX_X_LABELS = 8
ROW = 30  # height of one row of a ranking
LABEL_WIDTH = 200
RANKING_WIDTH = 960

Format = Callable[[int], str]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


@dataclass(frozen=True)
class Line:
    series: int
    points: str
    dots: list[tuple[float, float, str]]


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass
class Chart:
    kind: str  # bars | lines | ranking
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Bar] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    labels: list[Tick] = field(default_factory=list)  # ranking: the row names, and the values after the bars
    values: list[tuple[float, float, str]] = field(default_factory=list)
    legend: list[tuple[int, str]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.bars or self.lines)

    @property
    def plot_left(self) -> int:
        return LEFT

    @property
    def plot_right(self) -> int:
        return self.width - RIGHT

    @property
    def plot_bottom(self) -> int:
        return self.height - BOTTOM

    @property
    def label_right(self) -> int:
        return LABEL_WIDTH - 10


def nice_step(maximum: float, steps: int = 4) -> float:
    """A round step (1, 2 or 5 times a power of ten) so that ``steps`` of them reach ``maximum``."""
    if maximum <= 0:
        return 1
    raw = maximum / steps
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if multiple * magnitude >= raw:
            return multiple * magnitude
    return 10 * magnitude


def _scale(maximum: int, fmt: Format) -> tuple[float, list[Tick]]:
    step = nice_step(maximum)
    top = max(step, math.ceil(maximum / step) * step)
    plot = HEIGHT - BOTTOM - TOP
    ticks = []
    value = 0.0
    while value <= top + step / 2:
        ticks.append(Tick(HEIGHT - BOTTOM - value / top * plot, fmt(int(value))))
        value += step
    return top, ticks


def _x_ticks(days: Sequence[date], slot: float) -> list[Tick]:
    every = max(1, math.ceil(len(days) / MAX_X_LABELS))
    return [Tick(LEFT + (i + 0.5) * slot, d.strftime("%m-%d")) for i, d in enumerate(days) if i % every == 0]


def _table(days: Sequence[date], series: Sequence[tuple[str, Sequence[int]]], fmt: Format,
           day_label: str) -> tuple[list[str], list[list[str]]]:
    header = [day_label, *[name for name, _ in series]]
    rows = [[d.isoformat(), *[fmt(values[i]) for _, values in series]] for i, d in enumerate(days)]
    return header, rows


def stacked_bars(days: Sequence[date], series: Sequence[tuple[str, Sequence[int]]], fmt: Format, *,
                 day_label: str) -> Chart:
    """One bar per day, stacked by series (series with nothing in the window are left out)."""
    series = [(name, values) for name, values in series if any(values)]
    chart = Chart("bars")
    if not days or not series:
        return chart
    totals = [sum(values[i] for _, values in series) for i in range(len(days))]
    top, chart.y_ticks = _scale(max(totals), fmt)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - BOTTOM - TOP
    slot = plot_width / len(days)
    width = max(1.0, slot * 0.72)
    for i, d in enumerate(days):
        base = float(HEIGHT - BOTTOM)
        for index, (name, values) in enumerate(series):
            if values[i] <= 0:
                continue
            height = values[i] / top * plot_height
            base -= height
            chart.bars.append(Bar(round(LEFT + i * slot + (slot - width) / 2, 2), round(base, 2), round(width, 2),
                                  round(height, 2), index % PALETTE, f"{d.isoformat()} {name}: {fmt(values[i])}"))
    chart.x_ticks = _x_ticks(days, slot)
    chart.legend = [(index % PALETTE, name) for index, (name, _) in enumerate(series)]
    chart.header, chart.rows = _table(days, series, fmt, day_label)
    return chart


def lines(days: Sequence[date], series: Sequence[tuple[str, Sequence[int]]], fmt: Format, *,
          day_label: str) -> Chart:
    """One line per series, a dot per day (a lone day is a dot)."""
    chart = Chart("lines")
    if not days or not any(any(values) for _, values in series):
        return chart
    top, chart.y_ticks = _scale(max(max(values) for _, values in series), fmt)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - BOTTOM - TOP
    slot = plot_width / len(days)
    for index, (name, values) in enumerate(series):
        dots = [(round(LEFT + (i + 0.5) * slot, 2), round(HEIGHT - BOTTOM - v / top * plot_height, 2),
                 f"{d.isoformat()} {name}: {fmt(v)}") for i, (d, v) in enumerate(zip(days, values, strict=True))]
        chart.lines.append(Line(index % PALETTE, " ".join(f"{x},{y}" for x, y, _ in dots), dots))
    chart.x_ticks = _x_ticks(days, slot)
    chart.legend = [(index % PALETTE, name) for index, (name, _) in enumerate(series)]
    chart.header, chart.rows = _table(days, series, fmt, day_label)
    return chart


def ranking(items: Sequence[tuple[str, int, str]], fmt: Format, *, header: list[str]) -> Chart:
    """Horizontal bars, largest first: (name, value, a note shown in the table)."""
    chart = Chart("ranking", width=RANKING_WIDTH)  # it spans the page: a wider box keeps its text small
    items = [item for item in items if item[1] > 0]
    if not items:
        return chart
    chart.height = ROW * len(items) + 8
    top = max(value for _, value, _ in items)
    span = RANKING_WIDTH - LABEL_WIDTH - 100
    for i, (name, value, _) in enumerate(items):
        y = 4 + i * ROW
        length = max(1.0, value / top * span)
        chart.bars.append(Bar(LABEL_WIDTH, y + 4, round(length, 2), ROW - 10, 0, f"{name}: {fmt(value)}"))
        chart.labels.append(Tick(y + ROW / 2 + 1, name if len(name) <= 16 else name[:15] + "…"))
        chart.values.append((round(LABEL_WIDTH + length + 6, 2), y + ROW / 2 + 1, fmt(value)))
    chart.header = header
    chart.rows = [[name, fmt(value), note] for name, value, note in items]
    return chart
