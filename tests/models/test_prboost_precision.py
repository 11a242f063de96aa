"""Candidate precision is shrunk toward the pool's view where dev says little (issue 9)."""

import numpy as np

from models.prboost.matching import Corpus
from models.prboost.propose import ScoringConfig, rank_candidates
from models.prboost.rules import KeywordRule

POOL = ["alpha one", "alpha two", "alpha three", "alpha four", "beta one", "beta two"]
DEV = ["alpha x", "beta x", "gamma"]


def _rank(pool_proba=None, config=None):
    rules = [KeywordRule(("alpha",), 1), KeywordRule(("beta",), 1)]
    return {
        c.rule.words[0]: c
        for c in rank_candidates(
            rules,
            [2, 2],
            [None, None],
            pool_corpus=Corpus(POOL),
            dev_corpus=Corpus(DEV),
            dev_labels=np.array([1, 1, 0]),
            pool_proba=pool_proba,
            config=config or ScoringConfig(),
        )
    }


def test_without_pool_view_one_dev_match_sets_the_estimate():
    out = _rank()
    assert out["alpha"].dev_precision == out["beta"].dev_precision == 2 / 3  # Beta(1 + 1, 1)


def test_pool_agreement_moves_estimates_where_dev_is_thin():
    proba = np.zeros((6, 2))
    proba[:4] = [0.1, 0.9]  # the model agrees that "alpha" texts are class 1
    proba[4:] = [0.9, 0.1]  # and disagrees for "beta"
    out = _rank(proba)
    assert out["alpha"].dev_precision > 0.7 > 0.4 > out["beta"].dev_precision
    assert out["alpha"].score > out["beta"].score
    # a stronger prior trusts the pool more
    strong = _rank(proba, ScoringConfig(prior_strength=40.0))
    assert strong["beta"].dev_precision < out["beta"].dev_precision
