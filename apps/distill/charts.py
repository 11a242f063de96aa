"""A grouped bar chart of dev and test accuracy per loss, drawn as inline SVG on the server."""

from __future__ import annotations

from dataclasses import dataclass

from apps.distill.kinds import LOSS_LABELS

COLORS = {"dev": "#2563eb", "test": "#059669"}


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str  # tooltip: "KD, test: 0.912"


@dataclass(frozen=True)
class GroupLabel:
    x: float
    text: str


@dataclass(frozen=True)
class AccuracyChart:
    bars: list[Bar]
    groups: list[GroupLabel]
    width: int
    height: int
    base_y: float
    top: float
    legend: list[tuple[str, str]]


def accuracy_chart(
    students: list[dict], *, height: int = 180, group_width: int = 90
) -> AccuracyChart:
    """Bars for dev and test accuracy (0..1) of each loss's student; missing values are skipped."""
    top, bottom, left = 10.0, 30.0, 10.0
    plot_h = height - top - bottom
    bar_w = (group_width - 20) / 2
    bars, groups = [], []
    for i, s in enumerate(students):
        x0 = left + i * group_width
        name = LOSS_LABELS.get(s["loss"], s["loss"])
        for j, split in enumerate(("dev", "test")):
            value = s.get(f"{split}_accuracy")
            if value is None:
                continue
            h = plot_h * max(0.0, min(1.0, float(value)))
            bars.append(
                Bar(
                    x=x0 + 5 + j * bar_w,
                    y=top + plot_h - h,
                    width=bar_w - 2,
                    height=h,
                    color=COLORS[split],
                    title=f"{name}, {split}: {float(value):.3f}",
                )
            )
        groups.append(GroupLabel(x=x0 + group_width / 2 - 5, text=name))
    width = int(left * 2 + group_width * max(1, len(students)))
    return AccuracyChart(
        bars=bars,
        groups=groups,
        width=width,
        height=height,
        base_y=top + plot_h,
        top=top,
        legend=list(COLORS.items()),
    )
