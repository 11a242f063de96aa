"""Progress callbacks: sub-steps map onto the parent's range."""

import pytest

from models.progress import ensure_progress, null_progress, scaled


def test_scaled_maps_a_sub_step_onto_the_parent_range():
    seen = []
    sub = scaled(lambda f, m: seen.append((round(f, 3), m)), 0.2, 0.6)
    sub(0.0, "start")
    sub(0.5, "half")
    sub(1.5, "clamped")
    assert seen == [(0.2, "start"), (0.4, "half"), (0.6, "clamped")]


def test_scaled_nests_and_accepts_none():
    seen = []
    outer = scaled(lambda f, m: seen.append(round(f, 3)), 0.5, 1.0)
    inner = scaled(outer, 0.0, 0.5)
    inner(1.0, "done")
    assert seen == [0.75]
    scaled(None, 0.0, 1.0)(0.3, "ignored")  # no parent: nothing happens


def test_scaled_rejects_bad_ranges():
    with pytest.raises(ValueError, match="0 <= lo <= hi <= 1"):
        scaled(None, 0.8, 0.2)


def test_ensure_progress_defaults_to_null():
    assert ensure_progress(None) is null_progress
    assert null_progress(0.5, "x") is None
