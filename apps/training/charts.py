"""Line charts drawn on the server as inline SVG (no JavaScript library): metrics against round.

``line_chart`` computes the geometry; ``frontend/templates/training/_line_chart.html`` draws it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PALETTE = ("#2563eb", "#dc2626", "#059669", "#9333ea", "#d97706")
# Series that coincide (test accuracy under macro-F1) stay visible: each has its own dash and
# marker, so the one drawn on top never hides the other.
DASHES = ("", "6 4", "2 3", "8 3 2 3", "4 2")
MARKERS = ("circle", "square", "triangle", "diamond", "circle")


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    round: int
    value: float
    label: str  # tooltip: "round 3: 0.842"


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    points: list[Point]
    path: str  # SVG polyline points "x,y x,y ..."
    dash: str = ""  # SVG stroke-dasharray ("" = solid)
    marker: str = "circle"  # circle | square | triangle | diamond
    # The first series is drawn wide with filled markers, later ones thin with hollow markers,
    # so a series drawn over an identical one still lets it show through.
    width: float = 3.0
    hollow: bool = False


@dataclass(frozen=True)
class Tick:
    pos: float
    text: str


@dataclass(frozen=True)
class LineChart:
    title: str
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    n_points: int

    @property
    def bottom(self) -> int:
        return self.top + self.plot_height

    @property
    def right(self) -> int:
        return self.left + self.plot_width


def _fmt(value: float, percent: bool) -> str:
    if percent:
        return f"{100 * value:.1f}%"
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def _tick_text(value: float, step: float, percent: bool) -> str:
    """A tick label with as many decimals as the step needs (90%, 92.5%, 0.25)."""
    scale = 100 if percent else 1
    decimals = 0
    while decimals < 6 and abs(round(step * scale, decimals) - step * scale) > 1e-9:
        decimals += 1
    text = f"{value * scale:.{decimals}f}"
    return f"{text}%" if percent else text


def nice_ticks(lo: float, hi: float, *, target: int = 4, whole: bool = False) -> list[float]:
    """Round tick values covering [lo, hi]: steps of 1, 2, 2.5 or 5 times a power of ten
    (whole numbers only when ``whole``), about ``target`` intervals, first ≤ lo, last ≥ hi."""
    span = max(hi - lo, 1e-12)
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if whole else (1, 2, 2.5, 5, 10)
    step = next(m * power for m in steps if m * power >= raw - 1e-12)
    if whole:
        step = max(1.0, round(step))
    first = math.floor(lo / step + 1e-9) * step
    ticks = []
    value = first
    while value < hi - 1e-9 * step:
        ticks.append(round(value, 12))
        value += step
    ticks.append(round(value, 12))
    return ticks


def line_chart(
    title: str,
    rounds: list[int],
    series: list[tuple[str, list[float | None]]],
    *,
    percent: bool = False,
    y_min: float | None = None,
    y_max: float | None = None,
    width: int = 360,
    height: int = 200,
) -> LineChart:
    """One line per (name, values) with one value per round (None = no point for that round)."""
    left, right, top, bottom = 46, 10, 12, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    lo = min(values) if values else 0.0
    hi = max(values) if values else 1.0
    lo = lo if y_min is None else min(y_min, lo)
    hi = hi if y_max is None else max(y_max, hi)
    counts = not percent and all(float(v).is_integer() for v in values)
    if counts and hi - lo < 2:
        hi = lo + 2  # counts: whole-number ticks (lo, lo + 1, lo + 2)
    if hi - lo < 1e-9:
        lo, hi = lo - (0.05 if percent else 1), hi + (0.05 if percent else 1)
        if y_min is not None:
            lo = max(lo, y_min)
    ticks = nice_ticks(lo, hi, whole=counts)
    if percent and y_max is not None and ticks[-1] > y_max >= hi:
        ticks = [t for t in ticks if t <= y_max + 1e-9]
        hi = y_max
    if percent and y_min is not None and ticks[0] < y_min <= lo:
        ticks = [t for t in ticks if t >= y_min - 1e-9]
        lo = y_min
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    x_lo, x_hi = (min(rounds), max(rounds)) if rounds else (0, 1)
    x_span = max(x_hi - x_lo, 1)

    def sx(r: float) -> float:
        if len(rounds) <= 1:
            return round(left + plot_w / 2, 1)
        return round(left + plot_w * (r - x_lo) / x_span, 1)

    def sy(v: float) -> float:
        return round(top + plot_h * (1 - (v - lo) / (hi - lo)), 1)

    drawn = []
    for i, (name, vs) in enumerate(series):
        points = [
            Point(sx(r), sy(v), r, v, f"{name}, round {r}: {_fmt(v, percent)}")
            for r, v in zip(rounds, vs)
            if v is not None
        ]
        path = " ".join(f"{p.x},{p.y}" for p in points)
        drawn.append(
            Series(
                name,
                PALETTE[i % len(PALETTE)],
                points,
                path,
                dash=DASHES[i % len(DASHES)],
                marker=MARKERS[i % len(MARKERS)],
                width=3.0 if i == 0 else 1.6,
                hollow=i > 0,
            )
        )
    step = max(1, (x_span + 9) // 10)
    x_ticks = [Tick(sx(r), str(r)) for r in range(x_lo, x_hi + 1, step)] if rounds else []
    y_step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    y_ticks = [Tick(sy(t), _tick_text(t, y_step, percent)) for t in ticks]
    return LineChart(
        title=title,
        series=drawn,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        width=width,
        height=height,
        left=left,
        top=top,
        plot_width=plot_w,
        plot_height=plot_h,
        n_points=sum(len(s.points) for s in drawn),
    )


def round_charts(rounds) -> list[LineChart]:
    """The dashboard's charts from the live rounds (in order): quality, coverage, rules."""
    numbers = [r.number for r in rounds]
    m = [r.metrics or {} for r in rounds]
    quality = []
    if any(x.get("test_accuracy") is not None for x in m):
        quality.append(("test accuracy", [x.get("test_accuracy") for x in m]))
        quality.append(("test macro F1", [x.get("test_f1") for x in m]))
    quality.append(("dev accuracy (cross-fitted)", [x.get("dev_accuracy") for x in m]))
    return [
        line_chart("Accuracy and F1", numbers, quality, percent=True, y_max=1.0),
        line_chart(
            "Pool coverage by rules",
            numbers,
            [("coverage", [x.get("coverage") for x in m])],
            percent=True,
            y_min=0.0,
            y_max=1.0,
        ),
        line_chart(
            "Rules",
            numbers,
            [
                ("rules in force", [x.get("n_rules") for x in m]),
                ("accepted", [x.get("rules_accepted") for x in m]),
            ],
            y_min=0.0,
        ),
    ]
