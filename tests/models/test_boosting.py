"""SAMME boosting math: α, weight updates, large-error instances and the α-weighted ensemble."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from models.prboost.boosting import (
    Ensemble,
    large_error_indices,
    samme_alpha,
    samme_update,
    weighted_error,
)


def test_samme_round_matches_hand_computed_case():
    # 4 dev examples, uniform weights, K = 3, the learner misses example 0.
    w = np.full(4, 0.25)
    wrong = np.array([True, False, False, False])
    err = weighted_error(w, wrong)
    assert err == pytest.approx(0.25)
    alpha = samme_alpha(err, 3)
    assert alpha == pytest.approx(np.log(3.0) + np.log(2.0))  # log(0.75/0.25) + log(K-1) = log 6
    new = samme_update(w, wrong, alpha)
    # 0.25·6 = 1.5 for the miss, 0.25 for the rest; total 2.25
    np.testing.assert_allclose(new, [2 / 3, 1 / 9, 1 / 9, 1 / 9])


def test_weighted_error_uses_weights_not_counts():
    w = np.array([0.7, 0.1, 0.1, 0.1])
    assert weighted_error(w, np.array([True, False, False, False])) == pytest.approx(0.7)
    assert weighted_error(2 * w, np.array([False, True, True, False])) == pytest.approx(0.2)


def test_alpha_is_zero_at_chance_and_finite_at_perfect():
    assert samme_alpha(1 - 1 / 4, 4) == pytest.approx(0.0)
    assert samme_alpha(0.5, 2) == pytest.approx(0.0)
    assert np.isfinite(samme_alpha(0.0, 2)) and samme_alpha(0.0, 2) > 10
    assert np.isfinite(samme_alpha(1.0, 2)) and samme_alpha(1.0, 2) < -10


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="n_classes"):
        samme_alpha(0.2, 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        samme_alpha(1.5, 2)
    with pytest.raises(ValueError, match="shape"):
        samme_update(np.ones(3) / 3, np.array([True, False]), 1.0)
    with pytest.raises(ValueError, match="positive sum"):
        weighted_error(np.zeros(2), np.array([True, False]))


@settings(max_examples=200, deadline=None)
@given(
    w=hnp.arrays(np.float64, st.integers(2, 40), elements=st.floats(1e-6, 1.0)),
    data=st.data(),
    k=st.integers(2, 10),
)
def test_weights_stay_normalized_positive_and_misses_grow_when_better_than_chance(w, data, k):
    w = w / w.sum()
    wrong = data.draw(hnp.arrays(bool, w.shape))
    err = weighted_error(w, wrong)
    alpha = samme_alpha(err, k)
    new = samme_update(w, wrong, alpha)
    assert np.all(new > 0)
    assert new.sum() == pytest.approx(1.0)
    if 0 < err < (k - 1) / k - 1e-9 and wrong.any() and (~wrong).any():
        assert alpha > 0
        assert np.all(new[wrong] > w[wrong])
        assert np.all(new[~wrong] < w[~wrong])
        # the relative weight of a miss to a hit is multiplied by exactly e^α
        i, j = np.flatnonzero(wrong)[0], np.flatnonzero(~wrong)[0]
        assert (new[i] / new[j]) / (w[i] / w[j]) == pytest.approx(np.exp(alpha), rel=1e-6)


def test_update_survives_many_rounds_with_large_alpha():
    w = np.full(5, 0.2)
    wrong = np.array([True, False, False, False, False])
    for _ in range(200):
        w = samme_update(w, wrong, 50.0)
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0)
    assert w[0] == pytest.approx(1.0)


def test_large_error_indices_are_heaviest_misclassified_first():
    w = np.array([0.05, 0.30, 0.10, 0.25, 0.20, 0.10])
    wrong = np.array([True, False, True, True, True, False])
    np.testing.assert_array_equal(large_error_indices(w, wrong, 3), [3, 4, 2])
    np.testing.assert_array_equal(large_error_indices(w, wrong, 10), [3, 4, 2, 0])
    assert large_error_indices(w, np.zeros(6, bool), 3).size == 0
    assert large_error_indices(w, wrong, 0).size == 0


def test_large_error_ties_follow_a_seeded_random_order_not_file_order():
    w = np.full(200, 1 / 200)
    wrong = np.ones(200, dtype=bool)
    picks = [tuple(large_error_indices(w, wrong, 10, seed=s)) for s in range(5)]
    assert picks[0] == tuple(large_error_indices(w, wrong, 10, seed=0))  # deterministic
    assert len(set(picks)) == 5  # the seed decides, not the index
    assert picks[0] != tuple(range(10))
    # heavier examples still come first
    w2 = w.copy()
    w2[150] = 0.5
    assert large_error_indices(w2, wrong, 3, seed=1)[0] == 150


def test_large_error_spreads_over_classes_of_a_class_sorted_dev_file():
    labels = np.repeat([0, 1, 2], 50)  # a dev file sorted by class
    w = np.full(150, 1 / 150)
    wrong = np.ones(150, dtype=bool)
    idx = large_error_indices(w, wrong, 9, labels=labels, seed=0)
    assert np.bincount(labels[idx], minlength=3).tolist() == [3, 3, 3]
    # the heaviest of a class still leads when weights differ
    w2 = w.copy()
    w2[120] = 0.3
    assert large_error_indices(w2, wrong, 3, labels=labels, seed=0)[0] == 120


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.integers(0, 1000), st.integers(2, 5))
def test_large_error_returns_distinct_misclassified(n, seed, k):
    rng = np.random.default_rng(seed)
    w = rng.random(60)
    wrong = rng.random(60) < 0.5
    labels = rng.integers(0, k, 60)
    idx = large_error_indices(w, wrong, n, labels=labels, seed=seed)
    assert idx.size == min(n, int(wrong.sum())) and len(set(idx.tolist())) == idx.size
    assert np.all(wrong[idx])


class _Const:
    def __init__(self, p):
        self.p = np.asarray(p, dtype=float)

    def predict_proba(self, X):
        return np.tile(self.p, (len(X), 1))


def test_ensemble_is_alpha_weighted_average_of_members():
    ens = Ensemble(n_classes=2)
    ens.add(_Const([0.9, 0.1]), 1.0)
    ens.add(_Const([0.3, 0.7]), 3.0)
    p = ens.predict_proba(np.zeros((2, 4)))
    np.testing.assert_allclose(p, [[0.45, 0.55], [0.45, 0.55]])  # (0.9 + 3·0.3) / 4
    np.testing.assert_array_equal(ens.predict(np.zeros((1, 4))), [1])


def test_ensemble_ignores_members_no_better_than_chance():
    ens = Ensemble(n_classes=2)
    ens.add(_Const([0.8, 0.2]), 2.0)
    ens.add(_Const([0.0, 1.0]), -1.0)
    np.testing.assert_allclose(ens.predict_proba(np.zeros((1, 1))), [[0.8, 0.2]])
    only_bad = Ensemble(n_classes=3)
    only_bad.add(_Const([0.0, 0.0, 1.0]), 0.0)
    np.testing.assert_allclose(only_bad.predict_proba(np.zeros((2, 1))), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="no members"):
        Ensemble(n_classes=2).predict_proba(np.zeros((1, 1)))
