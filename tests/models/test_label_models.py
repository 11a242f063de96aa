"""Label models: one interface, known answers, Snorkel equivalence on the sparse path."""

import numpy as np
import pytest

from models.prboost.label_models import (
    MajorityVote,
    SnorkelLabelModel,
    WeightedVote,
    dev_accuracies,
    label_model_device,
    make_label_model,
    overlap_matrix,
)
from models.prboost.matching import LabelMatrix

ALL_MODELS = [MajorityVote, WeightedVote, SnorkelLabelModel]


def synthetic_votes(n=3000, m=8, k=3, coverage=0.4, seed=0):
    """Votes from a known generative model: rule j fires with prob ``coverage`` and is right with
    accuracy 0.6 + 0.04 j, otherwise votes a uniformly drawn wrong class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    votes = np.full((n, m), -1)
    for j in range(m):
        fire = rng.random(n) < coverage
        right = rng.random(n) < 0.6 + 0.04 * j
        wrong = (y + rng.integers(1, k, n)) % k
        votes[fire, j] = np.where(right, y, wrong)[fire]
    return votes, y


@pytest.mark.parametrize("cls", ALL_MODELS)
def test_unanimous_votes_give_that_label_with_high_probability(cls):
    votes = np.array([[0, 0, 0], [1, 1, 1], [2, 2, -1], [-1, 1, 1]] * 25)
    L = LabelMatrix.from_dense(votes)
    model = cls().fit(L, 3, L_dev=L, y_dev=np.array([0, 1, 2, 1] * 25))
    proba = model.predict_proba(L)
    assert proba.shape == (100, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba[np.arange(100), [0, 1, 2, 1] * 25] > 0.9).all()
    assert model.predict(L)[:4].tolist() == [0, 1, 2, 1]


@pytest.mark.parametrize("cls", ALL_MODELS)
def test_uncovered_rows_get_the_uniform_distribution(cls):
    votes = np.array([[0, 0, -1], [-1, -1, -1], [1, -1, 1], [-1, -1, -1]] * 5)
    L = LabelMatrix.from_dense(votes)
    model = cls().fit(L, 2)
    proba = model.predict_proba(L)
    np.testing.assert_allclose(proba[1], [0.5, 0.5])
    np.testing.assert_allclose(proba[3], [0.5, 0.5])
    assert model.predict(L)[1] == -1


def test_majority_vote_splits_ties_evenly():
    votes = np.array([[0, 1, -1], [0, 1, 2], [0, 0, 1], [2, 2, 2]])
    proba = (
        MajorityVote()
        .fit(LabelMatrix.from_dense(votes), 3)
        .predict_proba(LabelMatrix.from_dense(votes))
    )
    np.testing.assert_allclose(proba[0], [0.5, 0.5, 0])
    np.testing.assert_allclose(proba[1], [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(proba[2], [1, 0, 0])
    np.testing.assert_allclose(proba[3], [0, 0, 1])


def test_weighted_vote_trusts_the_accurate_rule():
    # rule 0 is always right on dev, rules 1 and 2 always wrong: rule 0 alone decides.
    dev = LabelMatrix.from_dense(np.array([[0, 1, 1], [1, 0, 0], [0, 1, 1], [1, 0, 0]] * 5))
    y_dev = np.array([0, 1, 0, 1] * 5)
    model = WeightedVote().fit(dev, 2, L_dev=dev, y_dev=y_dev)
    assert model.weights_[0] > 0 and model.weights_[1] == model.weights_[2] == 0
    assert model.accuracies_[0] == pytest.approx(21 / 22)  # (20 + 1) / (20 + 2)
    test = LabelMatrix.from_dense(np.array([[1, 0, 0]]))
    assert model.predict(test).tolist() == [1]
    # without dev data it is a soft majority vote
    plain = WeightedVote().fit(test, 2).predict_proba(test)
    assert plain[0, 0] > plain[0, 1]


def test_dev_accuracies_skip_unknown_labels():
    L = LabelMatrix.from_dense(np.array([[0, -1], [0, 1], [1, 1], [0, 0]]))
    correct, matched, acc = dev_accuracies(L, np.array([0, 1, 0, -1]))
    assert correct.tolist() == [1, 1]  # rule 0: right on row 0 only; row 3 has no label
    assert matched.tolist() == [3, 2]
    np.testing.assert_allclose(acc, [2 / 5, 2 / 4])


def test_overlap_matrix_equals_snorkels_dense_computation():
    votes, _ = synthetic_votes(n=500, m=5, k=3)
    overlap = overlap_matrix(LabelMatrix.from_dense(votes), 3, chunk=77)
    one_hot = np.zeros((500, 15))
    for y in range(3):
        one_hot[:, y::3] = votes == y
    np.testing.assert_allclose(overlap, one_hot.T @ one_hot / 500)


def test_sparse_snorkel_equals_the_snorkel_package():
    import torch
    from snorkel.labeling.model import LabelModel

    votes, y = synthetic_votes(n=1500, m=6)
    reference = LabelModel(cardinality=3, verbose=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference.fit(votes, seed=7, progress_bar=False)
    finally:
        torch.set_num_threads(threads)
    ours = SnorkelLabelModel().fit(LabelMatrix.from_dense(votes), 3, seed=7)
    covered = (votes >= 0).any(axis=1)
    expected = reference.predict_proba(votes)[covered]
    got = ours.predict_proba(LabelMatrix.from_dense(votes))[covered]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    accuracy = (got.argmax(axis=1) == y[covered]).mean()
    assert accuracy > 0.7  # chance: 1/3


def test_snorkel_leaves_global_random_state_alone():
    votes, _ = synthetic_votes(n=200, m=4, k=2)
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    SnorkelLabelModel().fit(LabelMatrix.from_dense(votes), 2, seed=1)
    assert np.random.random() == expected


def test_snorkel_class_balance_from_dev_labels():
    votes, y = synthetic_votes(n=300, m=4, k=3)
    model = SnorkelLabelModel().fit(
        LabelMatrix.from_dense(votes), 3, y_dev=np.array([0, 0, 0, 1, -1])
    )
    np.testing.assert_allclose(model.model_.p, [4 / 7, 2 / 7, 1 / 7])


def test_snorkel_below_three_rules_falls_back_to_majority_vote():
    L = LabelMatrix.from_dense(np.array([[0, 0], [1, -1], [-1, -1]]))
    model = SnorkelLabelModel().fit(L, 2)
    assert isinstance(model.fallback_, MajorityVote)
    np.testing.assert_allclose(model.predict_proba(L), [[1, 0], [0, 1], [0.5, 0.5]])


def test_make_label_model_by_name():
    assert isinstance(make_label_model("majority"), MajorityVote)
    assert isinstance(make_label_model("weighted"), WeightedVote)
    assert isinstance(make_label_model("snorkel", n_epochs=10), SnorkelLabelModel)
    assert isinstance(make_label_model("auto", n_rules=2), MajorityVote)
    assert isinstance(make_label_model("auto", n_rules=3), SnorkelLabelModel)
    with pytest.raises(ValueError, match="unknown label model"):
        make_label_model("oracle")


def test_snorkel_fits_on_the_device_it_is_given():
    import torch

    votes, _ = synthetic_votes(n=600, m=5)
    L = LabelMatrix.from_dense(votes)
    default = SnorkelLabelModel().fit(L, 3, seed=2)
    on_cpu = SnorkelLabelModel(device="cpu").fit(L, 3, seed=2)
    assert default.model_.config.device == "cpu" and on_cpu.model_.mu.device.type == "cpu"
    np.testing.assert_array_equal(default.predict_proba(L), on_cpu.predict_proba(L))
    auto = make_label_model("snorkel", device="auto")
    assert auto.device == "auto"
    auto.fit(L, 3, seed=2)
    assert auto.model_.mu.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA not available"):  # Snorkel's own check
            SnorkelLabelModel(device="cuda").fit(L, 3)


def test_label_model_device_names():
    import torch

    assert label_model_device("cpu") == "cpu" and label_model_device("cuda:1") == "cuda:1"
    assert label_model_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="label model device"):
        label_model_device("tpu")
    # the votes are counts on the CPU: only Snorkel takes the device
    assert isinstance(make_label_model("weighted", device="cuda"), WeightedVote)
    assert isinstance(make_label_model("auto", n_rules=2, device="cuda"), MajorityVote)


def test_label_models_reject_out_of_range_votes_and_unfitted_use():
    L = LabelMatrix.from_dense(np.array([[0, 3, -1]]))
    with pytest.raises(ValueError, match="out of range for 2 classes"):
        MajorityVote().fit(L, 2)
    with pytest.raises(RuntimeError, match="not fitted"):
        WeightedVote().predict_proba(L)
    fitted = WeightedVote().fit(LabelMatrix.from_dense(np.array([[0, 1]])), 2)
    with pytest.raises(ValueError, match="fitted on 2 rules"):
        fitted.predict_proba(LabelMatrix.from_dense(np.array([[0, 1, -1]])))


def test_label_models_accept_dense_vote_arrays():
    votes = np.array([[0, 0, 1], [1, 1, 1]])
    proba = MajorityVote().fit(votes, 2).predict_proba(votes)
    assert proba.argmax(axis=1).tolist() == [0, 1]
