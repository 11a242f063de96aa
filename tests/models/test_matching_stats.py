"""rule_stats: coverage, overlap, conflict and smoothed dev precision on the sparse matrix."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.prboost.analysis import label_coverage, novelty, rule_stats, smoothed_precision
from models.prboost.matching import LabelMatrix


def test_rule_stats_against_hand_computed_numbers():
    votes = np.array(
        [
            [0, 0, -1],  # overlap, agree
            [0, 1, -1],  # overlap, conflict
            [-1, 1, 1],  # overlap, agree
            [1, -1, -1],  # alone
            [-1, -1, -1],  # no vote
        ]
    )
    y = np.array([0, 1, 1, -1, 0])
    stats = rule_stats(LabelMatrix.from_dense(votes), y)
    r0, r1, r2 = stats
    assert (r0.matches, r1.matches, r2.matches) == (3, 3, 1)
    assert r0.coverage == pytest.approx(3 / 5)
    assert r0.overlap == pytest.approx(2 / 5)
    assert r0.conflict == pytest.approx(1 / 5)
    assert r1.overlap == pytest.approx(3 / 5)
    assert r1.conflict == pytest.approx(1 / 5)
    assert r2.conflict == 0.0
    assert r0.polarity == (0, 1)
    assert r1.polarity == (0, 1)
    # rule 0: row 0 right, row 1 wrong (y=1, vote 0), row 3 unknown -> 1/2 -> (1+1)/(2+2)
    assert (r0.correct, r0.incorrect) == (1, 1)
    assert r0.precision == pytest.approx(0.5)
    # rule 1: rows 0, 1 and 2 right -> (3+1)/(3+2)
    assert (r1.correct, r1.incorrect) == (3, 0)
    assert r1.precision == pytest.approx(0.8)
    assert r1.empirical_accuracy == pytest.approx(1.0)
    assert r2.precision == pytest.approx(2 / 3)
    assert label_coverage(LabelMatrix.from_dense(votes)) == pytest.approx(0.8)


def test_rule_stats_without_labels_and_empty_matrix():
    stats = rule_stats(LabelMatrix.from_dense(np.array([[0], [-1]])))
    assert stats[0].precision == 0.5 and stats[0].labeled_matches == 0
    assert np.isnan(stats[0].empirical_accuracy)
    assert rule_stats(LabelMatrix.empty(4)) == []
    assert rule_stats(LabelMatrix.from_dense(np.zeros((0, 2), dtype=int)))[0].coverage == 0.0


def test_smoothed_precision_is_the_beta_posterior_mean():
    assert smoothed_precision(3, 3) == pytest.approx(0.8)
    assert smoothed_precision(0, 0) == pytest.approx(0.5)
    assert smoothed_precision(3, 3, prior=(2, 8)) == pytest.approx(5 / 13)


def test_novelty_is_the_share_of_uncovered_matches():
    covered = np.array([True, False, False, True])
    assert novelty(np.array([0, 1, 2]), covered) == pytest.approx(2 / 3)
    assert novelty(np.array([], dtype=int), covered) == 0.0


# snorkel's LFAnalysis triggers a scipy FutureWarning (its diags() call), not ours
@pytest.mark.filterwarnings("ignore::FutureWarning")
@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 30).flatmap(
        lambda n: st.tuples(
            st.lists(st.lists(st.integers(-1, 2), min_size=n, max_size=n), min_size=1, max_size=6),
            st.lists(st.integers(-1, 2), min_size=n, max_size=n),
        )
    )
)
def test_rule_stats_equal_snorkels_lf_analysis(data):
    from snorkel.labeling import LFAnalysis

    cols, y = data
    votes = np.array(cols, dtype=np.int64).T
    stats = rule_stats(LabelMatrix.from_dense(votes), np.array(y))
    analysis = LFAnalysis(votes)
    np.testing.assert_allclose([s.coverage for s in stats], analysis.lf_coverages())
    np.testing.assert_allclose([s.overlap for s in stats], analysis.lf_overlaps())
    np.testing.assert_allclose([s.conflict for s in stats], analysis.lf_conflicts())
