"""Boosting stays alive after round 0 (issue 9): members learn what their rules label and see the
dev set only through the current SAMME weights, so they differ and earn α > 0; a loop whose
annotator rejects every rule is plain AdaBoost on dev and the rules' loop beats it."""

import numpy as np

from models.prboost.loop import LoopConfig, PRBoostLoop
from models.prboost.simulate import SimulatedAnnotator
from tests.models.test_loop import _data


def _run(reject_all: bool, rounds: int = 4, **config):
    data, gold = _data()
    annotator = SimulatedAnnotator(gold)
    loop = PRBoostLoop(LoopConfig(n_classes=2, candidates_per_round=5, **config), n_dev=40)
    records = []
    for _ in range(rounds):
        records.append(loop.run_round(data))
        shown = [r.candidate for r in loop.pending[:5]]
        loop.judge([False] * len(shown) if reject_all else annotator.review(shown))
        loop.skip_pending()
    return loop, data, gold, records


def test_members_differ_and_earn_positive_alpha_after_round_zero():
    loop, data, _, records = _run(reject_all=False)
    assert loop.summary()["accepted"] >= 3
    alphas = [r["alpha"] for r in records[1:]]
    assert sum(a > 0 for a in alphas) > len(alphas) / 2, alphas
    preds = [m.model.predict_proba(data.pool_X) for m in loop.members]
    assert not np.allclose(preds[0], preds[1], atol=1e-3)  # member 1 learnt its rules
    assert records[1]["covered"] > 0
    for r in records:  # the honest (cross-fitted) ensemble dev accuracy is recorded
        assert 0.0 <= r["ensemble_dev_accuracy"] <= 1.0


def test_rules_beat_rejecting_every_rule_on_the_pool():
    loop, data, gold, _ = _run(reject_all=False)
    loop_none, _, _, _ = _run(reject_all=True)
    assert loop_none.summary()["accepted"] == 0
    acc = np.mean(loop.finalize(data).pool_labels == gold)
    acc_none = np.mean(loop_none.finalize(data).pool_labels == gold)
    assert acc > acc_none, (acc, acc_none)


def test_dev_weights_follow_samme_in_member_fits():
    """With uniform dev weights (the first build) every dev-only member repeats member 0."""
    loop, data, _, records = _run(reject_all=True, dev_sample_weights="uniform")
    first = loop.members[0].model.predict_proba(data.dev_X)
    assert np.allclose(first, loop.members[1].model.predict_proba(data.dev_X))
    loop_s, _, _, _ = _run(reject_all=True)
    assert not np.allclose(
        loop_s.members[0].model.predict_proba(data.dev_X),
        loop_s.members[1].model.predict_proba(data.dev_X),
    )


def test_finalize_with_a_fine_tuned_encoder_round_trips(tmp_path):
    import torch

    from tests.models.lm_fixtures import make_tiny_encoder

    torch.set_num_threads(1)
    name = str(make_tiny_encoder(tmp_path / "enc"))
    data, gold = _data()
    cfg = LoopConfig(
        n_classes=2, candidates_per_round=5, final_model="finetune", finetune_model=name
    )
    loop = PRBoostLoop(cfg, n_dev=40)
    loop.run_round(data)
    loop.judge(SimulatedAnnotator(gold).review([r.candidate for r in loop.pending[:5]]))
    final = loop.finalize(data)
    assert final.on_texts and final.pool_proba.shape == (220, 2)
    probs = final.predict_proba(None, data.dev)
    assert probs.shape == (40, 2)
    loop.save(tmp_path / "state")
    again = PRBoostLoop.load(tmp_path / "state")
    assert again.final.on_texts
    np.testing.assert_allclose(again.final.predict_proba(None, data.dev), probs, atol=1e-5)


def test_sparse_features_give_the_same_loop_as_dense():
    """TF-IDF features stay sparse (CSR) through members, ensemble and finalize."""
    import scipy.sparse as sp

    from models.prboost.loop import LoopData

    data, gold = _data()
    sparse = LoopData(
        dev=data.dev,
        pool_X=sp.csr_matrix(data.pool_X),
        dev_X=sp.csr_matrix(data.dev_X),
        pool_corpus=data.pool_corpus,
        dev_corpus=data.dev_corpus,
        proposer=data.proposer,
    )
    finals = []
    for d in (data, sparse):
        loop = PRBoostLoop(LoopConfig(n_classes=2, candidates_per_round=5), n_dev=40)
        for _ in range(2):
            loop.run_round(d)
            loop.judge(SimulatedAnnotator(gold).review([r.candidate for r in loop.pending[:5]]))
            loop.skip_pending()
        finals.append(loop.finalize(d).pool_proba)
    np.testing.assert_allclose(finals[0], finals[1], atol=1e-4)
