"""Server-rendered SVG geometry for the weights page: a histogram of weights and the validation
accuracy curve of the refinement (drawn by frontend/templates/alignment/_charts.html)."""

from __future__ import annotations

import numpy as np

WIDTH, HEIGHT, PAD = 420, 160, 30


def histogram(values: list[float], bins: int = 20) -> dict | None:
    """Bars of the weight distribution over [0, 1]."""
    if not values:
        return None
    counts, edges = np.histogram(np.clip(values, 0, 1), bins=bins, range=(0.0, 1.0))
    top = max(int(counts.max()), 1)
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    bar_w = plot_w / bins
    bars = []
    for i, c in enumerate(counts):
        h = plot_h * int(c) / top
        bars.append(
            {
                "x": round(PAD + i * bar_w, 1),
                "y": round(PAD + plot_h - h, 1),
                "w": round(bar_w - 1, 1),
                "h": round(h, 1),
                "label": f"{edges[i]:.2f}–{edges[i + 1]:.2f}: {int(c)} pairs",
            }
        )
    return {
        "bars": bars,
        "width": WIDTH,
        "height": HEIGHT,
        "pad": PAD,
        "max": top,
        "bottom": PAD + plot_h,
        "right": PAD + plot_w,
        "n": len(values),
    }


def curve(points: list[dict], key: str = "val_heldout_accuracy") -> dict | None:
    """Polyline of ``key`` against refinement iteration (the held-out validation accuracy)."""
    pts = [(p["iteration"], p[key]) for p in points if p.get(key) is not None]
    if len(pts) < 2:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    lo, hi = min(ys + [0.5]), max(ys + [1.0])
    x_max = max(xs) or 1
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def px(x, y):
        return (
            round(PAD + plot_w * x / x_max, 1),
            round(PAD + plot_h * (hi - y) / (hi - lo or 1), 1),
        )

    coords = [px(x, y) for x, y in pts]
    return {
        "path": " ".join(f"{x},{y}" for x, y in coords),
        "dots": [
            {"x": c[0], "y": c[1], "label": f"iteration {x}: {y:.3f}"}
            for c, (x, y) in zip(coords, pts)
        ],
        "width": WIDTH,
        "height": HEIGHT,
        "pad": PAD,
        "bottom": PAD + plot_h,
        "right": PAD + plot_w,
        "lo": f"{lo:.2f}",
        "hi": f"{hi:.2f}",
        "x_max": x_max,
    }
