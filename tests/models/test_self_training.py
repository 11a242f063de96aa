"""Self-training (sharpening, confident selection) and the simulated annotator."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from models.prboost.learners import EmbeddingClassifier
from models.prboost.self_training import confident_indices, self_train, sharpen
from models.prboost.simulate import SimulatedAnnotator


@settings(max_examples=100, deadline=None)
@given(
    p=hnp.arrays(
        np.float64, st.tuples(st.integers(1, 8), st.integers(2, 5)), elements=st.floats(0.01, 1)
    )
)
def test_sharpening_keeps_the_argmax_and_raises_confidence(p):
    p = p / p.sum(1, keepdims=True)
    q = sharpen(p, 0.5)
    np.testing.assert_allclose(q.sum(1), 1.0)
    assert np.all(q.max(1) >= p.max(1) - 1e-12)
    top = p.max(1, keepdims=True)
    assert np.all(q[p == top] >= p[p == top] - 1e-12)
    np.testing.assert_allclose(sharpen(p, 1.0), p)


def test_sharpen_squares_at_half_temperature():
    np.testing.assert_allclose(sharpen(np.array([[0.75, 0.25]]), 0.5), [[0.9, 0.1]])
    with pytest.raises(ValueError, match="positive"):
        sharpen(np.array([[0.5, 0.5]]), 0.0)


def test_confident_indices_threshold_and_per_class_cap():
    q = np.array([[0.95, 0.05], [0.6, 0.4], [0.99, 0.01], [0.02, 0.98], [0.97, 0.03]])
    np.testing.assert_array_equal(confident_indices(q, 0.9), [0, 2, 3, 4])
    np.testing.assert_array_equal(confident_indices(q, 0.9, max_per_class=1), [2, 3])
    assert confident_indices(q, 0.999).size == 0


def test_self_training_uses_dev_and_confident_pool_only():
    rng = np.random.default_rng(0)
    X_pool = rng.normal(size=(200, 4))
    truth = (X_pool[:, 0] > 0).astype(int)
    teacher = np.where(truth[:, None] == 1, [0.2, 0.8], [0.8, 0.2])
    teacher[:50] = [0.5, 0.5]  # unsure: sharpening keeps them at 0.5, below the threshold
    X_dev = rng.normal(size=(20, 4))
    y_dev = (X_dev[:, 0] > 0).astype(int)
    result = self_train(
        teacher,
        X_pool,
        X_dev,
        y_dev,
        make_model=lambda: EmbeddingClassifier(n_classes=2, C=10.0),
        temperature=0.5,
        threshold=0.9,
    )
    assert result.kept.min() >= 50 and result.kept.size == 150
    np.testing.assert_allclose(result.pseudo_labels[60], sharpen(teacher[60:61], 0.5)[0])
    assert (result.model.predict(X_pool) == truth).mean() > 0.95
    assert result.history[0]["kept"] == 150


def test_self_training_with_nothing_confident_and_no_dev_fails_clearly():
    with pytest.raises(ValueError, match="no pool example"):
        self_train(
            np.full((5, 2), 0.5),
            np.zeros((5, 3)),
            np.zeros((0, 3)),
            np.zeros(0, dtype=int),
            make_model=lambda: EmbeddingClassifier(n_classes=2),
        )


def _cand(matches, label):
    return SimpleNamespace(matches=np.asarray(matches), rule=SimpleNamespace(label=label))


def test_simulated_annotator_accepts_at_sixty_percent_precision():
    gold = np.array([1, 1, 1, 0, 0, -1, 1])
    ann = SimulatedAnnotator(gold)
    assert ann.precision([0, 1, 2, 3, 4], 1) == pytest.approx(0.6)
    assert ann.accepts(_cand([0, 1, 2, 3, 4], 1))
    assert not ann.accepts(_cand([0, 1, 3, 4], 1))  # 0.5
    assert ann.accepts(_cand([0, 5], 1))  # unknown gold does not count
    assert not ann.accepts(_cand([], 1))
    assert ann.review([_cand([0], 1), _cand([3], 1), _cand([4], 0)], budget=2) == [True, False]
    with pytest.raises(ValueError, match="outside the pool"):
        ann.precision([7], 1)
