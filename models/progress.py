"""Progress reporting for long computations: a plain callback ``progress(fraction, message)``.

Every long function in ``models/`` takes ``progress: Progress | None``; the web workers pass one
that updates a Job row, scripts pass ``print_progress`` or nothing. ``fraction`` runs 0.0 to 1.0.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Progress = Callable[[float, str], None]


def null_progress(fraction: float, message: str) -> None:
    """A progress callback that ignores everything (the default)."""


def ensure_progress(progress: Progress | None) -> Progress:
    """``progress`` itself, or ``null_progress`` when it is None."""
    return null_progress if progress is None else progress


def scaled(progress: Progress | None, lo: float, hi: float) -> Progress:
    """A callback for a sub-step that maps its own 0..1 onto ``lo..hi`` of the parent's range.

    >>> seen = []
    >>> sub = scaled(lambda f, m: seen.append(round(f, 2)), 0.5, 1.0)
    >>> sub(0.5, "half of the second half")
    >>> seen
    [0.75]
    """
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"scaled() needs 0 <= lo <= hi <= 1, got lo={lo}, hi={hi}")
    parent = ensure_progress(progress)

    def sub(fraction: float, message: str) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        parent(lo + (hi - lo) * fraction, message)

    return sub


def print_progress(fraction: float, message: str) -> None:
    """A callback for scripts: one line per call on stderr."""
    print(f"[{100 * fraction:5.1f}%] {message}", file=sys.stderr, flush=True)
