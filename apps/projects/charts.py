"""Small charts drawn on the server as inline SVG (no JavaScript library)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    label: str
    short_label: str
    value: int
    share: float  # of the total, 0-1
    percent: float  # of the total, 0-100, one decimal
    y: float
    width: float
    text_y: float
    value_x: float


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    total: int
    width: int
    height: int
    label_width: int
    bar_height: int
    plot_width: int


def bar_chart(
    rows: list[tuple[str, int]],
    *,
    width: int = 420,
    label_width: int = 130,
    bar_height: int = 18,
    gap: int = 6,
    value_width: int = 70,
    max_label_chars: int = 18,
) -> BarChart:
    """Geometry of a horizontal bar chart: one bar per (label, value), scaled to the largest."""
    plot_width = max(width - label_width - value_width, 10)
    largest = max((value for _, value in rows), default=0)
    total = sum(value for _, value in rows)
    bars = []
    for i, (label, value) in enumerate(rows):
        y = gap + i * (bar_height + gap)
        bar_width = plot_width * value / largest if largest else 0.0
        short = label if len(label) <= max_label_chars else label[: max_label_chars - 1] + "…"
        bars.append(
            Bar(
                label=label,
                short_label=short,
                value=value,
                share=value / total if total else 0.0,
                percent=round(100 * value / total, 1) if total else 0.0,
                y=y,
                width=round(max(bar_width, 1.0 if value else 0.0), 1),
                text_y=y + bar_height * 0.72,
                value_x=round(label_width + max(bar_width, 1.0) + 6, 1),
            )
        )
    height = gap + len(rows) * (bar_height + gap)
    return BarChart(
        bars=bars,
        total=total,
        width=width,
        height=max(height, bar_height + 2 * gap),
        label_width=label_width,
        bar_height=bar_height,
        plot_width=plot_width,
    )
