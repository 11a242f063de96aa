"""The PRBoost loop: rounds, decisions, save/load giving identical next rounds, finalize."""

import numpy as np
import pytest

from models.data import TextDataset
from models.prboost.loop import LoopConfig, LoopData, LoopError, PRBoostLoop
from models.prboost.matching import Corpus, LabelMatrix
from models.prboost.propose import NgramProposer
from models.prboost.rules import KeywordRule
from models.prboost.simulate import SimulatedAnnotator

SPAM = ["cheap", "pills", "free", "money", "click", "subscribe", "winner", "offer"]
HAM = ["song", "love", "voice", "lyrics", "guitar", "dance", "singer", "chorus"]
FILLER = ["the", "this", "really", "today", "again", "here", "great", "nice"]


def _synthetic(n: int, seed: int):
    """Texts from two vocabularies (with some cross-talk), labels, and noisy 16-d features."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    texts = []
    for label in y:
        own, other = (SPAM, HAM) if label == 1 else (HAM, SPAM)
        words = list(rng.choice(own, 2)) + list(rng.choice(FILLER, 3))
        if rng.random() < 0.2:
            words.append(str(rng.choice(other)))
        rng.shuffle(words)
        texts.append(" ".join(words))
    centers = rng.normal(size=(2, 16))
    X = centers[y] * 0.6 + rng.normal(size=(n, 16))
    return texts, y, X


def _data(proposer=True, seed_votes=False):
    texts, y, X = _synthetic(260, seed=1)
    dev = TextDataset(texts[:40], y[:40], ["HAM", "SPAM"], [f"d{i}" for i in range(40)])
    pool_texts, pool_y = texts[40:], y[40:]
    votes = None
    if seed_votes:
        votes = np.full((220, 1), -1)
        votes[[i for i, t in enumerate(pool_texts) if "free" in t.split()], 0] = 1
    data = LoopData(
        dev=dev,
        pool_X=X[40:],
        dev_X=X[:40],
        pool_corpus=Corpus(pool_texts),
        dev_corpus=Corpus(dev.texts),
        proposer=NgramProposer(max_n=1) if proposer else None,
        seed_pool_votes=None if votes is None else LabelMatrix.from_dense(votes),
    )
    return data, pool_y


def _step(loop, data, annotator):
    record = loop.run_round(data)
    loop.judge(annotator.review([r.candidate for r in loop.pending[:5]]))
    loop.skip_pending()
    return record


def _fingerprint(loop, record):
    return (
        record["err"],
        record["alpha"],
        record["large_error"],
        loop.weights.tolist(),
        [r.candidate.key for r in loop.pending],
        [float(r.candidate.score) for r in loop.pending],
    )


@pytest.mark.parametrize("targets", ["covered", "product"])
def test_save_load_midway_gives_identical_next_round(tmp_path, targets):
    data, gold = _data()
    annotator = SimulatedAnnotator(gold)
    loop = PRBoostLoop(
        LoopConfig(n_classes=2, candidates_per_round=5, pool_targets=targets), n_dev=40
    )
    for _ in range(2):
        _step(loop, data, annotator)
    assert loop.accepted, "the simulated annotator should accept some keyword rules"
    loop.save(tmp_path / "state")
    again = PRBoostLoop.load(tmp_path / "state")
    assert again.round == 2 and again.summary() == loop.summary()
    np.testing.assert_array_equal(again.weights, loop.weights)
    a = _fingerprint(loop, loop.run_round(data))
    b = _fingerprint(again, again.run_round(data))
    assert a == b
    np.testing.assert_array_equal(loop.predict_proba(data.dev_X), again.predict_proba(data.dev_X))


def test_round_zero_without_rules_trains_on_dev_and_updates_weights():
    data, _ = _data()
    loop = PRBoostLoop(LoopConfig(n_classes=2), n_dev=40)
    record = loop.run_round(data)
    assert record["round"] == 0 and record["covered"] == 0 and record["n_rules"] == 0
    assert 0 < record["err"] < 0.5 and record["alpha"] > 0
    assert loop.weights.sum() == pytest.approx(1.0)
    wrong = np.isin(np.arange(40), record["large_error"])
    assert wrong.any()
    # the large-error instances are the heaviest examples now
    assert loop.weights[wrong].min() >= loop.weights[~wrong].max() - 1e-12
    assert loop.pending and all(
        r.candidate.source_index in record["large_error"] for r in loop.pending
    )


def test_pending_candidates_block_the_next_round_and_decisions_apply():
    data, _ = _data()
    loop = PRBoostLoop(LoopConfig(n_classes=2, candidates_per_round=4), n_dev=40)
    loop.run_round(data)
    n = len(loop.pending)
    assert n >= 2
    with pytest.raises(LoopError, match="wait for a decision"):
        loop.run_round(data)
    first = loop.pending[0].candidate.rule
    loop.accept(0)
    edited = KeywordRule(("zzz-edited",), 1)
    loop.accept(0, rule=edited)
    loop.reject(0)
    assert loop.accepted == [first, edited]
    assert [r.decision for r in loop.reviews[:3]] == ["accepted", "edited", "rejected"]
    with pytest.raises(LoopError, match="no pending candidate"):
        loop.accept(99)
    loop.skip_pending()
    record = loop.run_round(data)
    assert record["n_accepted"] == 2
    judged = loop.judged
    assert all(r.candidate.key not in judged for r in loop.pending)


def test_seed_votes_are_used_from_round_zero_and_required_after_reload(tmp_path):
    data, _ = _data(seed_votes=True)
    loop = PRBoostLoop(LoopConfig(n_classes=2), n_dev=40, n_seed_votes=1)
    record = loop.run_round(data, propose=False)
    assert record["covered"] > 0 and record["n_rules"] == 1
    loop.save(tmp_path)
    plain, _ = _data(seed_votes=False)
    with pytest.raises(LoopError, match="seed vote columns"):
        PRBoostLoop.load(tmp_path).run_round(plain)


def test_finalize_self_trains_and_survives_save_load(tmp_path):
    data, gold = _data()
    annotator = SimulatedAnnotator(gold)
    loop = PRBoostLoop(LoopConfig(n_classes=2, candidates_per_round=5, threshold=0.8), n_dev=40)
    for _ in range(2):
        _step(loop, data, annotator)
    final = loop.finalize(data)
    assert loop.round == 3  # rules accepted after round 1 get a last member first
    assert final.pool_proba.shape == (220, 2) and final.kept.size > 0
    assert (final.pool_labels == gold).mean() > 0.8
    with pytest.raises(LoopError, match="finalized"):
        loop.run_round(data)
    loop.save(tmp_path)
    again = PRBoostLoop.load(tmp_path)
    np.testing.assert_array_equal(again.final.pool_proba, final.pool_proba)
    np.testing.assert_array_equal(
        again.final.model.predict_proba(data.dev_X), final.model.predict_proba(data.dev_X)
    )


def test_product_teacher_lets_the_rules_correct_the_ensemble_on_covered_rows():
    data, gold = _data(proposer=False, seed_votes=True)  # seed rule: "free" -> SPAM
    covered = data.seed_pool_votes.covered()
    loop = PRBoostLoop(LoopConfig(n_classes=2), n_dev=40, n_seed_votes=1)
    loop.run_round(data)
    ensemble = loop.predict_proba(data.pool_X)
    loop.config.final_teacher = "product"
    product = loop.teacher_proba(data)
    np.testing.assert_allclose(product[~covered], ensemble[~covered], atol=1e-6)
    np.testing.assert_allclose(product.sum(axis=1), 1.0)
    # the rule's SPAM vote moves each of its rows towards SPAM, by the label model's odds
    assert (product[covered, 1] >= ensemble[covered, 1] - 1e-6).all()
    rows, soft = loop.soft_labels(data, loop.round)
    np.testing.assert_array_equal(rows, np.flatnonzero(covered))
    odds = soft[:, 1] / soft[:, 0]
    assert (odds > 1).all()
    flips = (ensemble[rows].argmax(1) == 0) & (ensemble[rows, 1] * odds > ensemble[rows, 0])
    assert flips.any(), "some uncertain HAM predictions should follow the rule"
    np.testing.assert_array_equal(
        product[rows].argmax(1), np.where(flips, 1, ensemble[rows].argmax(1))
    )
    loop.config.final_teacher = "ensemble"
    np.testing.assert_array_equal(loop.teacher_proba(data), ensemble)
    with pytest.raises(LoopError, match="final_teacher"):
        LoopConfig(n_classes=2, final_teacher="oracle")


def test_the_label_model_fits_on_the_configured_device(monkeypatch):
    import models.prboost.label_models as label_models

    data, _ = _data(proposer=False, seed_votes=True)
    seen = []
    real = label_models.make_label_model

    def recording(name, *args, **kwargs):
        seen.append((name, kwargs.get("device")))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(label_models, "make_label_model", recording)
    config = LoopConfig(n_classes=2, label_model="snorkel", label_model_device="auto")
    loop = PRBoostLoop(config, n_dev=40, n_seed_votes=1)
    loop.soft_labels(data, 0)
    assert seen == [("snorkel", "auto")]
    assert LoopConfig(n_classes=2).label_model_device == "cpu"
    assert LoopConfig.from_dict(config.to_dict()).label_model_device == "auto"
    with pytest.raises(LoopError, match="label_model_device"):
        LoopConfig(n_classes=2, label_model_device="tpu")


def test_wrong_data_and_missing_state_fail_clearly(tmp_path):
    data, _ = _data()
    loop = PRBoostLoop(LoopConfig(n_classes=2), n_dev=39)
    with pytest.raises(LoopError, match="dev weights"):
        loop.run_round(data)
    with pytest.raises(LoopError, match="state.json"):
        PRBoostLoop.load(tmp_path / "nowhere")
    with pytest.raises(LoopError, match="n_classes"):
        LoopConfig(n_classes=1)
    with pytest.raises(LoopError, match="unknown config keys"):
        LoopConfig.from_dict({"n_classes": 2, "bogus": 1})


def test_crossfit_dev_predictions_never_come_from_a_model_that_saw_the_row(monkeypatch):
    """Every model behind a dev row's cross-fitted prediction — the fold's self-trained model and
    the teacher models whose pool predictions it learnt from — trained without that row."""
    from models.prboost import learners

    data, gold = _data(seed_votes=True)
    annotator = SimulatedAnnotator(gold)
    dev_rows = {data.dev_X[i].tobytes(): i for i in range(len(data.dev))}
    touched: list = []  # models asked for predictions since the last dev prediction
    leaks: list[tuple[int, int]] = []
    predicted: set[int] = set()
    real_fit = learners.EmbeddingClassifier.fit
    real_predict = learners.EmbeddingClassifier.predict_proba

    def fit(self, X, y, sample_weight=None):
        w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight)
        self.seen_dev_rows = {
            dev_rows[row.tobytes()]
            for row, weight in zip(np.asarray(X), w)
            if weight > 0 and row.tobytes() in dev_rows
        }
        return real_fit(self, X, y, sample_weight=sample_weight)

    def predict_proba(self, X):
        rows = [dev_rows.get(np.asarray(row).tobytes()) for row in np.asarray(X)]
        touched.append(self)
        if rows and all(r is not None for r in rows) and len(rows) < len(data.dev):
            for i, model in enumerate(touched):  # this fold's teachers and its own model
                leaks.extend((i, r) for r in rows if r in model.seen_dev_rows)
            predicted.update(rows)
            touched.clear()
        return real_predict(self, X)

    monkeypatch.setattr(learners.EmbeddingClassifier, "fit", fit)
    monkeypatch.setattr(learners.EmbeddingClassifier, "predict_proba", predict_proba)
    config = LoopConfig(n_classes=2, candidates_per_round=5, threshold=0.8, train_on_dev=True)
    loop = PRBoostLoop(config, n_dev=40)
    for _ in range(2):
        _step(loop, data, annotator)
    loop.finalize(data)
    assert all(m.model.seen_dev_rows == set(range(40)) for m in loop.members)  # saw dev
    touched.clear()
    leaks.clear()  # the rounds' own fold predictions are checked by the same rule elsewhere
    predicted.clear()
    proba = loop.crossfit_dev_proba(data)
    assert proba.shape == (40, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert predicted == set(range(40))  # every dev row predicted by a held-out model
    assert not leaks, f"(model, dev row) pairs where the model trained on the row: {leaks[:5]}"
    # the final model itself saw every dev row: its dev predictions would have leaked
    assert loop.final.model.seen_dev_rows == set(range(40))


def test_crossfit_leaves_out_members_whose_fold_models_belong_to_another_dev_set():
    data, gold = _data()
    annotator = SimulatedAnnotator(gold)
    loop = PRBoostLoop(LoopConfig(n_classes=2, candidates_per_round=5, threshold=0.8), n_dev=40)
    _step(loop, data, annotator)
    loop.finalize(data)
    with_dev = [m for m in loop.members if m.fold_models]
    assert with_dev and all(m.dev_key == data.dev_key for m in with_dev)
    for m in with_dev:
        m.dev_key = "another dev set"
        for fold_model in m.fold_models:  # would raise if the stale fold models were used
            fold_model.predict_proba = None
    proba = loop.crossfit_dev_proba(data)
    assert proba.shape == (40, 2)
