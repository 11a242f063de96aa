"""The PRBoost loop, one round at a time, with its whole state saved to and loaded from a folder.

A round t (see DESIGN.md, PRBoost):
  1. apply the accepted rules (plus any precomputed seed votes) to the pool -> label matrix L
     (n_pool, m); the label model turns it into soft labels on the covered rows;
  2. train the weak learner m_t on what the rules in force label: the covered pool rows with the
     label model's soft labels (the first build also trained every member on the whole dev set at
     weight 5, so each re-learnt member 0 and boosting died after round 0). With
     ``train_on_dev`` it also sees the dev set, weighted by the current SAMME weights, and its dev
     predictions for the SAMME error come from ``cv_folds``-fold cross-fitting, so α stays honest
     ("auto", the default: both kinds are fitted, the lower weighted dev error is kept);
     a round with no rule coverage trains on the (SAMME-weighted) dev set alone;
  3. SAMME: err_t, α_t, dev weights updated; the record holds the ensemble's cross-fitted dev
     accuracy;
  4. the N misclassified dev examples with the largest weights are the large-error instances
     (ties in a seeded random order, spread over the gold classes);
  5. the proposer turns them into ranked candidate rules, which wait for ``accept``/``reject``;
     when it returns fewer than ``candidates_per_round`` the instance set is widened.
Round 0 trains on the seed rules when there are any, else on the dev set alone.
``finalize`` trains a last member when rules were accepted after the last round, then self-trains
the final model on the pool with sharpened pseudo-labels (ensemble × the rules' label model on
covered rows) plus the gold dev labels. ``crossfit_dev_proba`` gives the dev set's predictions of
that model honestly: one model per dev fold, trained as the final model is but without the fold's
labels anywhere in it (its teacher from the members' fold models, its label model fitted on the
other folds).

The loop object holds only state; the data (``LoopData``: features, corpora, proposer) is given
again when a saved loop is loaded, so a worker can run one round, save, and exit, and another
process can run the next round from the folder: the next round is identical (seeds are fixed per
round, arrays are saved exactly in ``.npz``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.data import TextDataset
from models.prboost.boosting import (
    Ensemble,
    average_probas,
    large_error_indices,
    samme_alpha,
    samme_update,
    weighted_error,
)
from models.prboost.learners import (
    EmbeddingClassifier,
    FineTunedEncoder,
    mark_entities,
    stack_rows,
)
from models.prboost.matching import Corpus, LabelMatrix, apply_rules
from models.prboost.rules import Rule, rule_from_dict
from models.prboost.self_training import self_train, sharpen
from models.progress import Progress, ensure_progress, scaled

STATE_FILE = "state.json"
FORMAT_VERSION = 1


class LoopError(ValueError):
    """A loop operation that cannot be done as asked (the message says why); nothing changed."""


# --------------------------------------------------------------------------- config and data
@dataclass
class LoopConfig:
    """Settings of one PRBoost run (saved with the state)."""

    n_classes: int
    seed: int = 0
    n_large_error: int = 10  # large-error instances per round
    candidates_per_round: int = 10  # k given to the proposer
    # "weighted" (accuracy-weighted vote, weights from the dev set), "majority", "snorkel", or
    # "auto" (majority vote below 3 rules, else snorkel); "weighted" won on the benchmark
    label_model: str = "weighted"
    # where Snorkel's label model fits: "cpu" (default; the (rules x classes)^2 problem is small),
    # "cuda[:N]", or "auto" (a GPU when the worker running the round has one: a saved run stays
    # portable between CPU and GPU workers)
    label_model_device: str = "cpu"
    head: str = "logreg"  # weak learner head on the features: "logreg" or "mlp"
    C: float = 10.0  # inverse L2 strength of the head
    # Members train on what the rules label (the covered pool rows, label-model soft labels);
    # train_on_dev: True = also on the dev set (SAMME-weighted, cross-fitted dev error), False =
    # never (the paper's weak learners), "auto" = fit both each round and keep the one with the
    # lower weighted dev error (both errors are honest). "auto" because neither won everywhere on
    # the cross-fitted ensemble dev accuracy (seed 0: wrench-youtube 0.942 with dev vs 0.925
    # without; wrench-sms 0.974 vs 0.978; wrench-trec 0.738 vs 0.748) — chosen on dev, not test.
    # A round with no rule coverage (round 0 without seed rules) trains on dev alone.
    train_on_dev: bool | str = "auto"
    # weight of the dev set in a member's fit: "samme" = dev_weight · n_dev · w_i with the current
    # SAMME weights w (mean dev_weight; the misclassified examples grow, so members differ) or
    # "uniform" = dev_weight each (the first build: every member repeated member 0's mistakes)
    dev_sample_weights: str = "samme"
    dev_weight: float = 5.0  # weight of one gold dev example relative to one pseudo-labeled one
    cv_folds: int = 5
    min_confidence: float = 0.0  # covered rows whose label-model max prob is below are dropped
    # Which pool rows a member trains on, with which targets (default chosen on the benchmark):
    #  "covered": the rule-covered rows with the label model's soft labels (the paper's choice);
    #  "product": every pool row, target ∝ p_rules(x)^rule_power · p_prev(x), where p_prev is the
    #  ensemble so far (before round 0: a model fitted on the dev set alone) and p_rules the label
    #  model (uniform where no rule votes); rows whose sharpened target is below pool_threshold
    #  are left out. Rules then correct a strong dev-trained model instead of replacing it.
    pool_targets: str = "covered"
    rule_power: float = 1.0
    pool_temperature: float = 1.0
    pool_threshold: float = 0.0
    # self-training (finalize). The teacher's pseudo-labels: "ensemble" (the boosted members'
    # probabilities, the paper's choice) or "product" (those times the label model's soft labels
    # ^rule_power on rule-covered rows, as in the members' "product" targets: a precise rule's
    # vote reaches the final model directly instead of through the members' smoothing)
    final_teacher: str = "product"
    temperature: float = 0.5
    threshold: float = 0.9
    self_train_iterations: int = 2  # the second mixes teacher and student (self_training.py)
    max_per_class: int | None = None
    final_dev_weight: float = 5.0
    # large-error instances are spread over the gold classes (ties broken by a seeded order);
    # when the proposer returns fewer than candidates_per_round, the set is widened (×2, ×4 ...
    # up to widen_max times n_large_error) so review places fill
    spread_classes: bool = True
    widen_max: int = 4
    # the final (self-trained) model: "head" = the weak learner's head on the features (fast, CPU)
    # or "finetune" = ``learners.FineTunedEncoder`` on the texts themselves (entity-marked for
    # relations; a GPU worker's job), encoder ``finetune_model`` (None = all-MiniLM-L6-v2)
    final_model: str = "head"
    features: str = ""  # the caller's name for the learner's features, kept for later rounds
    finetune_model: str | None = None
    finetune_epochs: int = 3

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise LoopError("n_classes must be at least 2")
        if self.cv_folds < 2:
            raise LoopError("cv_folds must be at least 2")
        if self.pool_targets not in ("covered", "product"):
            raise LoopError(
                f"pool_targets must be 'covered' or 'product', not {self.pool_targets!r}"
            )
        if self.final_teacher not in ("ensemble", "product"):
            raise LoopError(
                f"final_teacher must be 'ensemble' or 'product', not {self.final_teacher!r}"
            )
        if self.head not in ("logreg", "mlp"):
            raise LoopError(f"head must be 'logreg' or 'mlp', got {self.head!r}")
        if self.dev_sample_weights not in ("samme", "uniform"):
            raise LoopError(
                f"dev_sample_weights must be 'samme' or 'uniform', not {self.dev_sample_weights!r}"
            )
        if self.widen_max < 1:
            raise LoopError("widen_max must be at least 1")
        if self.train_on_dev not in (True, False, "auto"):
            raise LoopError(
                f"train_on_dev must be true, false or 'auto', not {self.train_on_dev!r}"
            )
        if self.final_model not in ("head", "finetune"):
            raise LoopError(f"final_model must be 'head' or 'finetune', not {self.final_model!r}")
        device = self.label_model_device
        if device not in ("cpu", "auto") and not device.startswith("cuda"):
            raise LoopError(
                f"label_model_device must be 'cpu', 'cuda[:N]' or 'auto', not {device!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise LoopError(f"unknown config keys: {sorted(unknown)}")
        return cls(**d)


@dataclass
class LoopData:
    """What a round needs besides the state; built by the caller, never saved.

    pool_X (n_pool, D) / dev_X (n_dev, D): the weak learner's features (``learners.text_features``).
    pool_corpus / dev_corpus: what rules are matched against (texts, embeddings, answer index).
    seed_pool_votes / seed_dev_votes: precomputed votes of seed labeling functions that are not
    ``Rule`` objects (e.g. a WRENCH set's ``weak_labels``); dev votes may be None (unknown).
    proposer: turns large-error instances into candidates (``propose.Proposer``); None = no
    proposals (the loop then only boosts over the rules it has).
    """

    dev: TextDataset
    pool_X: np.ndarray
    dev_X: np.ndarray
    pool_corpus: Corpus
    dev_corpus: Corpus
    proposer: Any = None
    seed_pool_votes: LabelMatrix | None = None
    seed_dev_votes: LabelMatrix | None = None
    # the caller's ids of the dev rows (e.g. database ids): with the labels they name the dev set
    # a member's fold models were trained on (``dev_key``); None = the labels alone
    dev_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        n_pool, n_dev = len(self.pool_corpus), len(self.dev_corpus)
        if np.shape(self.pool_X)[0] != n_pool:
            raise LoopError(f"pool_X has {np.shape(self.pool_X)[0]} rows for {n_pool} pool texts")
        if np.shape(self.dev_X)[0] != n_dev or len(self.dev) != n_dev:
            raise LoopError("dev, dev_X and dev_corpus must have the same number of rows")
        if not np.all(self.dev.labels >= 0):
            raise LoopError("every dev example needs a gold label")
        if self.seed_pool_votes is not None and self.seed_pool_votes.n != n_pool:
            raise LoopError("seed_pool_votes must have one row per pool example")
        if self.seed_dev_votes is not None and self.seed_dev_votes.n != n_dev:
            raise LoopError("seed_dev_votes must have one row per dev example")

    @property
    def n_pool(self) -> int:
        return len(self.pool_corpus)

    @property
    def dev_key(self) -> str:
        """Names this dev set (its ids and labels): fold models trained on another dev set do
        not hold its folds out."""
        import hashlib

        digest = hashlib.sha256(np.asarray(self.dev.labels, dtype=np.int64).tobytes())
        if self.dev_ids is not None:
            digest.update(np.asarray(self.dev_ids, dtype=np.int64).tobytes())
        return digest.hexdigest()


def rule_key(rule: Rule) -> str:
    """The identity of a rule for 'already judged' checks (the proposer's own key when present)."""
    try:
        from models.prboost.propose import rule_key as proposer_key
    except ImportError:
        return json.dumps(rule.to_dict(), sort_keys=True)
    return proposer_key(rule)


# --------------------------------------------------------------------------- records
@dataclass
class Member:
    """One boosting round's weak learner and its SAMME numbers."""

    round: int
    model: EmbeddingClassifier
    alpha: float
    err: float
    fold_models: list[EmbeddingClassifier] = dataclasses.field(default_factory=list)
    dev_key: str = ""  # ``LoopData.dev_key`` of the dev set the fold models were trained on


@dataclass
class Review:
    """A candidate and its decision: 'pending', 'accepted', 'edited' or 'rejected'."""

    candidate: Any  # propose.Candidate
    round: int
    decision: str = "pending"
    final_rule: Rule | None = None  # what joined the rule set (the edited rule for 'edited')


@dataclass
class FinalModel:
    """The self-trained model and the labeled pool it produced."""

    model: Any  # EmbeddingClassifier (on features) or FineTunedEncoder (on texts)
    pool_proba: np.ndarray  # (n_pool, K) the final model's probabilities on the pool
    kept: np.ndarray  # pool indices it trained on (confident pseudo-labels)

    @property
    def on_texts(self) -> bool:
        """True when the model reads texts (a fine-tuned encoder), not feature rows."""
        return isinstance(self.model, FineTunedEncoder)

    def predict_proba(self, X: np.ndarray, dataset: TextDataset | None = None) -> np.ndarray:
        """(n, K) for feature rows X, or for ``dataset``'s texts when the model reads texts."""
        if self.on_texts:
            if dataset is None:
                raise LoopError("the fine-tuned final model reads texts: give the dataset")
            return self.model.predict_proba(model_texts(dataset.texts, dataset.entities))
        return self.model.predict_proba(X)

    @property
    def pool_labels(self) -> np.ndarray:
        return self.pool_proba.argmax(axis=1)

    @property
    def pool_confidence(self) -> np.ndarray:
        return self.pool_proba.max(axis=1)


# --------------------------------------------------------------------------- the loop
class PRBoostLoop:
    """State of a PRBoost run: dev weights, seed/accepted/judged rules, ensemble members with α,
    per-round metrics, reviews of every candidate. ``run_round`` → decisions → ``run_round`` ... →
    ``finalize``; ``save``/``load`` at any point between calls."""

    def __init__(
        self, config: LoopConfig, n_dev: int, seed_rules: Sequence[Rule] = (), n_seed_votes: int = 0
    ) -> None:
        if n_dev < 1:
            raise LoopError("the dev set is empty: PRBoost needs gold dev labels")
        self.config = config
        self.weights = np.full(n_dev, 1.0 / n_dev)  # (n_dev,) SAMME weights
        self.seed_rules: list[Rule] = list(seed_rules)
        self.n_seed_votes = int(n_seed_votes)  # columns expected in LoopData.seed_pool_votes
        self.accepted: list[Rule] = []
        self.reviews: list[Review] = []
        self.members: list[Member] = []
        self.history: list[dict[str, Any]] = []
        self.large_error: np.ndarray = np.zeros(0, dtype=np.int64)
        self.final: FinalModel | None = None
        self.dev_probas: list[np.ndarray] = []  # (n_dev, K) cross-fitted per member
        self._members_rules = 0  # len(accepted) when the last member was trained

    # -- read-only views
    @property
    def round(self) -> int:
        """Number of rounds run so far (the next round's index)."""
        return len(self.members)

    @property
    def pending(self) -> list[Review]:
        return [r for r in self.reviews if r.decision == "pending"]

    @property
    def rules(self) -> list[Rule]:
        """Every rule in force: seed rules, then accepted ones."""
        return self.seed_rules + self.accepted

    @property
    def judged(self) -> set[str]:
        keys = {rule_key(r.candidate.rule) for r in self.reviews if r.decision != "pending"}
        return keys | {rule_key(r) for r in self.rules}

    @property
    def ensemble(self) -> Ensemble:
        ens = Ensemble(n_classes=self.config.n_classes)
        for m in self.members:
            ens.add(m.model, m.alpha)
        return ens

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The ensemble's (n, K) probabilities: Σ α_t p_t / Σ α_t."""
        return self.ensemble.predict_proba(X)

    # -- labels from rules
    def label_matrix(self, data: LoopData) -> LabelMatrix:
        """(n_pool, m): seed votes (if any), then every Rule in force, applied to the pool."""
        L = apply_rules(self.rules, data.pool_corpus) if self.rules else None
        if self.n_seed_votes:
            if data.seed_pool_votes is None or data.seed_pool_votes.m != self.n_seed_votes:
                raise LoopError(
                    f"this loop was started with {self.n_seed_votes} seed vote columns; "
                    "give the same seed_pool_votes in LoopData"
                )
            L = data.seed_pool_votes if L is None else data.seed_pool_votes.hstack(L)
        return L if L is not None else LabelMatrix.empty(data.n_pool)

    def dev_label_matrix(self, data: LoopData) -> LabelMatrix | None:
        """The same columns on the dev set, or None when seed dev votes are unknown."""
        if self.n_seed_votes and data.seed_dev_votes is None:
            return None
        L = apply_rules(self.rules, data.dev_corpus) if self.rules else None
        if self.n_seed_votes:
            L = data.seed_dev_votes if L is None else data.seed_dev_votes.hstack(L)
        return L if L is not None else LabelMatrix.empty(len(data.dev))

    def soft_labels(
        self,
        data: LoopData,
        round_index: int,
        L: LabelMatrix | None = None,
        dev_rows: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(covered pool indices (c,), soft labels (c, K)) from the rules and the label model;
        ``dev_rows`` limits the dev examples the label model learns from (default: all)."""
        L = self.label_matrix(data) if L is None else L
        K = self.config.n_classes
        if L.m == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, K))
        covered = np.flatnonzero(L.covered())
        if covered.size == 0:
            return covered, np.zeros((0, K))
        from models.prboost.label_models import make_label_model

        name = self.config.label_model
        if name == "auto":
            name = "majority" if L.m < 3 else "snorkel"
        L_dev = self.dev_label_matrix(data)
        y_dev = data.dev.labels
        if dev_rows is not None:
            L_dev = None if L_dev is None else L_dev.rows(dev_rows)
            y_dev = y_dev[dev_rows]
        lm = make_label_model(name, device=self.config.label_model_device)
        lm.fit(
            L,
            K,
            L_dev=L_dev,
            y_dev=y_dev,  # class balance even when dev votes are unknown
            seed=self.config.seed + round_index,
        )
        proba = np.asarray(lm.predict_proba(L.rows(covered)), dtype=np.float64)
        if self.config.min_confidence > 0:
            keep = proba.max(axis=1) >= self.config.min_confidence
            covered, proba = covered[keep], proba[keep]
        return covered, proba

    # -- one weak learner
    def _make_model(self, round_index: int) -> EmbeddingClassifier:
        c = self.config
        return EmbeddingClassifier(
            n_classes=c.n_classes, head=c.head, C=c.C, seed=c.seed + round_index
        )

    def _targets(
        self,
        data: LoopData,
        covered: np.ndarray,
        soft: np.ndarray,
        round_index: int,
        fold: int | None,
        dev_rows: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pool rows and targets a member (or its fold model) trains on.

        "covered": the label model's soft labels on the covered rows. "product": every row with
        target ∝ p_rules^rule_power · p_prev, sharpened and thresholded, where p_prev is the
        ensemble of the earlier members' models for the same fold (``fold`` None = the full
        models), or before round 0 a model fitted on ``dev_rows`` alone. Using the fold's own
        models keeps the held-out dev fold out of everything its predictions depend on.
        """
        c = self.config
        if c.pool_targets == "covered":
            return covered, soft
        if self.members:
            models = [
                m.fold_models[fold] if fold is not None and m.fold_models else m.model
                for m in self.members
            ]
            probas = [mod.predict_proba(data.pool_X) for mod in models]
            prev = average_probas(probas, self.ensemble.effective_alphas(), c.n_classes)
        else:
            base = self._make_model(round_index).fit(
                data.dev_X[dev_rows], data.dev.labels[dev_rows]
            )
            prev = base.predict_proba(data.pool_X)
        target = np.clip(prev, 1e-9, None)
        if covered.size:
            target[covered] *= np.clip(soft, 1e-9, None) ** c.rule_power
        target = sharpen(target / target.sum(axis=1, keepdims=True), c.pool_temperature)
        rows = np.flatnonzero(target.max(axis=1) >= c.pool_threshold)
        return rows, target[rows]

    def _fit_member(
        self, data: LoopData, covered: np.ndarray, soft: np.ndarray, round_index: int
    ) -> tuple[EmbeddingClassifier, list[EmbeddingClassifier], np.ndarray, int, bool]:
        """Fit m_t (see ``LoopConfig.train_on_dev``).

        Returns (model, fold models, (n_dev, K) honest dev probabilities, pool rows used, whether
        it trained on dev). A member that trains on dev also gets one model per dev fold trained
        without that fold; folds are fixed for the whole run, so the dev error that sets α is
        honest. A member that never saw dev is scored on its own dev predictions. With "auto"
        both are fitted and the one with the lower weighted dev error is kept.
        """
        c = self.config
        no_rules = covered.size == 0 or c.pool_targets == "product"
        if no_rules or c.train_on_dev is True:
            return (*self._fit_one(data, covered, soft, round_index, use_dev=True), True)
        rules_only = self._fit_one(data, covered, soft, round_index, use_dev=False)
        if c.train_on_dev is False:
            return (*rules_only, False)
        # the fold models decide; the full model is fitted only when this kind wins
        with_dev = self._fit_one(data, covered, soft, round_index, use_dev=True, full=False)
        y_dev = data.dev.labels
        errs = [
            weighted_error(self.weights, cand[2].argmax(axis=1) != y_dev)
            for cand in (rules_only, with_dev)
        ]
        if errs[1] < errs[0]:
            model = self._fit_one(data, covered, soft, round_index, use_dev=True, folds=False)[0]
            return model, with_dev[1], with_dev[2], with_dev[3], True
        return (*rules_only, False)

    def _fit_one(
        self,
        data: LoopData,
        covered: np.ndarray,
        soft: np.ndarray,
        round_index: int,
        *,
        use_dev: bool,
        full: bool = True,
        folds: bool = True,
    ) -> tuple[Any, list[EmbeddingClassifier], np.ndarray, int]:
        """One kind of member: the full model (unless not ``full``), and with ``use_dev`` one
        model per dev fold (unless not ``folds``) whose predictions give the honest dev error."""
        c = self.config
        K = c.n_classes
        y_dev = data.dev.labels
        Y_dev = np.eye(K)[y_dev]
        n_dev = len(y_dev)
        if c.dev_sample_weights == "samme":
            w_dev = c.dev_weight * n_dev * self.weights  # (n_dev,) mean dev_weight
        else:
            w_dev = np.full(n_dev, c.dev_weight)

        def fit(fold: int | None, dev_rows: np.ndarray) -> tuple[EmbeddingClassifier, int]:
            rows, targets = self._targets(data, covered, soft, round_index, fold, dev_rows)
            train_dev = dev_rows if use_dev else np.zeros(0, dtype=np.int64)
            X = stack_rows(data.dev_X[train_dev], data.pool_X[rows])
            Y = np.concatenate([Y_dev[train_dev], targets])
            w = np.concatenate([w_dev[train_dev], np.ones(rows.size)])
            if X.shape[0] == 0:
                raise LoopError("nothing to train on: no dev rows and no pool rows")
            return self._make_model(round_index).fit(X, Y, sample_weight=w), int(rows.size)

        model, n_rows = fit(None, np.arange(n_dev)) if full or not use_dev else (None, 0)
        if not use_dev:  # the member never saw dev: its own dev predictions are honest
            return model, [], model.predict_proba(data.dev_X), n_rows
        dev_proba = np.zeros((n_dev, K))
        fold_models = []
        if not folds:
            return model, fold_models, dev_proba, n_rows
        for f, held in enumerate(_folds(y_dev, c.cv_folds, c.seed)):
            fold_model, fold_rows = fit(f, np.setdiff1d(np.arange(n_dev), held))
            n_rows = n_rows if model is not None else fold_rows
            fold_models.append(fold_model)
            dev_proba[held] = fold_model.predict_proba(data.dev_X[held])
        return model, fold_models, dev_proba, n_rows

    # -- a round
    def run_round(
        self, data: LoopData, *, propose: bool = True, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Train m_t, update weights, pick large-error instances and (if ``propose``) ask the
        proposer for candidates. Pending candidates of the previous round must be judged first.
        Returns this round's record (also appended to ``history``)."""
        progress = ensure_progress(progress)
        if self.final is not None:
            raise LoopError("the loop is finalized; no more rounds")
        if self.pending:
            raise LoopError(f"{len(self.pending)} candidates still wait for a decision")
        self._check_data(data)
        t = self.round
        c = self.config
        started = time.perf_counter()
        progress(0.0, f"round {t}: applying {len(self.rules)} rules")
        L = self.label_matrix(data)
        covered, soft = self.soft_labels(data, t, L)
        progress(0.2, f"round {t}: training on {covered.size} rule-labeled examples")
        model, fold_models, dev_proba, n_rows, saw_dev = self._fit_member(data, covered, soft, t)
        y_dev = data.dev.labels
        wrong = dev_proba.argmax(axis=1) != y_dev
        err = weighted_error(self.weights, wrong)
        alpha = samme_alpha(err, c.n_classes)
        self.weights = samme_update(self.weights, wrong, alpha)
        self.members.append(
            Member(
                round=t,
                model=model,
                alpha=alpha,
                err=err,
                fold_models=fold_models,
                dev_key=data.dev_key if fold_models else "",
            )
        )
        self._refresh_dev_probas(data)
        self.dev_probas.append(dev_proba)
        self._members_rules = len(self.accepted)
        ens_dev = average_probas(self.dev_probas, self.ensemble.effective_alphas(), c.n_classes)
        labels = y_dev if c.spread_classes else None
        self.large_error = large_error_indices(
            self.weights, wrong, c.n_large_error, labels=labels, seed=c.seed + t
        )
        trained_s = time.perf_counter() - started
        record: dict[str, Any] = {
            "round": t,
            "n_rules": len(self.rules) + self.n_seed_votes,
            "n_accepted": len(self.accepted),
            "covered": int(covered.size),
            "coverage": float(covered.size / max(data.n_pool, 1)),
            "pool_rows_trained": n_rows,
            "member_saw_dev": saw_dev,
            "err": err,
            "alpha": alpha,
            "member_dev_accuracy": float(1.0 - wrong.mean()),
            # the α-weighted ensemble of the members' cross-fitted dev predictions (honest)
            "ensemble_dev_accuracy": float(np.mean(ens_dev.argmax(axis=1) == y_dev)),
            "large_error": self.large_error.tolist(),
            "n_candidates": 0,
            "train_seconds": trained_s,
        }
        if propose and data.proposer is not None and self.large_error.size:
            progress(0.6, f"round {t}: proposing rules from {self.large_error.size} instances")
            kwargs: dict[str, Any] = {}
            accepts = inspect.signature(data.proposer.propose).parameters
            if "dev_weights" in accepts:  # optional extras of the library's proposers
                kwargs["dev_weights"] = self.weights
            if "covered" in accepts:
                kwargs["covered"] = L.covered()
            if "pool_proba" in accepts:  # the model's view of the pool, for precision priors
                kwargs["pool_proba"] = self.predict_proba(data.pool_X)
            instances = self.large_error
            factor = 1
            while True:
                candidates = data.proposer.propose(
                    instance_indices=instances,
                    dev=data.dev,
                    pool_corpus=data.pool_corpus,
                    dev_corpus=data.dev_corpus,
                    accepted=self.rules,
                    judged=self.judged,
                    n_classes=c.n_classes,
                    k=c.candidates_per_round,
                    **kwargs,
                )
                factor *= 2
                if (
                    len(candidates) >= c.candidates_per_round
                    or factor > c.widen_max
                    or instances.size >= wrong.size
                ):
                    break
                instances = self._widened(wrong, c.n_large_error * factor, labels, c.seed + t)
            self.reviews.extend(Review(candidate=cand, round=t) for cand in candidates)
            record["n_candidates"] = len(candidates)
            record["n_instances"] = int(instances.size)
        record["seconds"] = time.perf_counter() - started
        self.history.append(record)
        progress(1.0, f"round {t}: err {err:.3f}, α {alpha:.2f}, {record['n_candidates']} proposed")
        return record

    def _refresh_dev_probas(self, data: LoopData) -> None:
        """Keep one (n_dev, K) dev prediction per earlier member. When the dev set changed since
        (gold examples added or removed) or a saved state has none, the member's own predictions
        on today's dev set stand in (cross-fitted only for the rounds since)."""
        n_dev = len(data.dev)
        fresh = []
        for i, m in enumerate(self.members[: len(self.members) - 1]):
            p = self.dev_probas[i] if i < len(self.dev_probas) else None
            if p is None or p.shape[0] != n_dev:
                p = m.model.predict_proba(data.dev_X)
            fresh.append(p)
        self.dev_probas = fresh

    def _widened(
        self, wrong: np.ndarray, n: int, labels: np.ndarray | None, seed: int
    ) -> np.ndarray:
        """n instances to propose from when the large-error set gave too few candidates: every
        misclassified one first (heaviest first), then the correctly classified dev examples
        with the largest weights (the ones boosting is closest to losing)."""
        first = large_error_indices(self.weights, wrong, n, labels=labels, seed=seed)
        if first.size >= n:
            return first
        rest = large_error_indices(self.weights, ~wrong, n - first.size, labels=labels, seed=seed)
        return np.concatenate([first, rest])

    def _check_data(self, data: LoopData) -> None:
        if len(data.dev) != self.weights.size:
            raise LoopError(
                f"this loop has {self.weights.size} dev weights but the dev set has "
                f"{len(data.dev)} examples"
            )
        if data.dev.n_classes != self.config.n_classes:
            raise LoopError("the dev set's label names do not match the loop's classes")

    # -- decisions
    def _review(self, index: int) -> Review:
        pending = self.pending
        if not 0 <= index < len(pending):
            raise LoopError(f"no pending candidate {index} (there are {len(pending)})")
        return pending[index]

    def accept(self, index: int, rule: Rule | None = None) -> Rule:
        """Accept pending candidate ``index`` (0-based among pending), optionally as an edited
        ``rule`` (then recorded as 'edited'). Returns the rule that joined the rule set."""
        review = self._review(index)
        final_rule = review.candidate.rule if rule is None else rule
        if not 0 <= final_rule.label < self.config.n_classes:
            raise LoopError(f"rule label {final_rule.label} is not a class of this loop")
        if rule_key(final_rule) in {rule_key(r) for r in self.rules}:
            raise LoopError("this rule is already in the rule set")
        review.decision = "accepted" if rule is None else "edited"
        review.final_rule = final_rule
        self.accepted.append(final_rule)
        return final_rule

    def reject(self, index: int) -> None:
        """Reject pending candidate ``index`` (0-based among pending)."""
        self._review(index).decision = "rejected"

    def judge(self, decisions: Sequence[bool]) -> None:
        """Accept (True) or reject (False) the pending candidates in order; the rest stay pending.

        Candidates whose rule duplicates one already accepted are rejected."""
        pending = self.pending
        if len(decisions) > len(pending):
            raise LoopError(f"{len(decisions)} decisions for {len(pending)} pending candidates")
        in_force = {rule_key(r) for r in self.rules}
        for review, ok in zip(pending, decisions):
            key = rule_key(review.candidate.rule)
            if ok and key not in in_force:
                review.decision, review.final_rule = "accepted", review.candidate.rule
                self.accepted.append(review.candidate.rule)
                in_force.add(key)
            else:
                review.decision = "rejected"

    def skip_pending(self) -> int:
        """Reject every candidate still pending (beyond the review budget); returns how many."""
        n = 0
        for review in self.pending:
            review.decision = "rejected"
            n += 1
        return n

    # -- finish
    def finalize(self, data: LoopData, progress: Progress | None = None) -> FinalModel:
        """Self-train the final model (see module doc); trains a last member first when rules were
        accepted after the last round. Pending candidates are left out (treated as rejected)."""
        progress = ensure_progress(progress)
        if self.final is not None:
            return self.final
        self._check_data(data)
        self.skip_pending()
        if not self.members or self._members_rules != len(self.accepted):
            self.run_round(data, propose=False, progress=scaled(progress, 0.0, 0.5))
        teacher = self.teacher_proba(data)
        X_pool, X_dev = self._final_inputs(data)
        result = self._self_train(
            teacher, X_pool, X_dev, data.dev.labels, scaled(progress, 0.5, 1.0)
        )
        self.final = FinalModel(
            model=result.model,
            pool_proba=result.model.predict_proba(X_pool),
            kept=result.kept,
        )
        return self.final

    def _final_inputs(self, data: LoopData) -> tuple[Any, Any]:
        """(pool inputs, dev inputs) of the final model: feature rows, or texts to fine-tune on."""
        if self.config.final_model == "finetune":
            return (
                model_texts(data.pool_corpus.texts, data.pool_corpus.entities),
                model_texts(data.dev.texts, data.dev.entities),
            )
        return data.pool_X, data.dev_X

    def _self_train(self, teacher, X_pool, X_dev, y_dev: np.ndarray, progress: Progress):
        c = self.config
        make_model = (
            self._make_finetuned
            if c.final_model == "finetune"
            else (lambda: self._make_model(10_000))
        )
        return self_train(
            teacher,
            X_pool,
            X_dev,
            y_dev,
            make_model=make_model,
            temperature=c.temperature,
            threshold=c.threshold,
            max_per_class=c.max_per_class,
            dev_weight=c.final_dev_weight,
            iterations=c.self_train_iterations,
            progress=progress,
        )

    def crossfit_dev_proba(self, data: LoopData, progress: Progress | None = None) -> np.ndarray:
        """(n_dev, K) the final model's predictions on the dev set, cross-fitted: each dev fold is
        predicted by a model trained as ``finalize`` trains the final one but with none of the
        fold's labels in it. Its teacher is the ensemble of the members' models for that fold
        (a member that never saw dev gives its own model; one whose fold models belong to an
        older dev set is left out), its label model learns from the other folds only, and the
        self-training sees the other folds' gold labels only. Costs one self-training per fold."""
        progress = ensure_progress(progress)
        if self.final is None:
            raise LoopError("finalize the loop first")
        self._check_data(data)
        c = self.config
        K = c.n_classes
        y_dev = np.asarray(data.dev.labels, dtype=np.int64)
        n_dev = y_dev.size
        X_pool, X_dev = self._final_inputs(data)
        folds = _folds(y_dev, c.cv_folds, c.seed)
        key = data.dev_key
        L = self.label_matrix(data) if c.final_teacher == "product" else None
        proba = np.zeros((n_dev, K))
        for f, held in enumerate(folds):
            progress(f / len(folds), f"cross-fitting dev fold {f + 1} of {len(folds)}")
            train_rows = np.setdiff1d(np.arange(n_dev), held)
            models, alphas = [], []
            for m, alpha in zip(self.members, self.ensemble.effective_alphas()):
                if not m.fold_models:  # never saw dev
                    models.append(m.model)
                elif m.dev_key == key and f < len(m.fold_models):
                    models.append(m.fold_models[f])
                else:
                    continue
                alphas.append(alpha)
            if models:
                probas = [mod.predict_proba(data.pool_X) for mod in models]
                teacher = average_probas(probas, np.asarray(alphas), K)
            else:
                teacher = np.full((data.n_pool, K), 1.0 / K)
            if L is not None:
                covered, soft = self.soft_labels(data, self.round, L, dev_rows=train_rows)
                if covered.size:
                    teacher = np.clip(teacher, 1e-9, None)
                    teacher[covered] *= np.clip(soft, 1e-9, None) ** c.rule_power
                    teacher /= teacher.sum(axis=1, keepdims=True)
            y_fold = y_dev.copy()
            y_fold[held] = -1  # self_train leaves rows labeled -1 out
            try:
                result = self._self_train(
                    teacher,
                    X_pool,
                    X_dev,
                    y_fold,
                    scaled(progress, f / len(folds), (f + 1) / len(folds)),
                )
            except ValueError:  # nothing confident and no other fold: no better than the prior
                proba[held] = np.bincount(y_dev[train_rows], minlength=K) / max(train_rows.size, 1)
                continue
            held_inputs = X_dev[held] if hasattr(X_dev, "shape") else [X_dev[i] for i in held]
            proba[held] = result.model.predict_proba(held_inputs)
        progress(1.0, "dev set cross-fitted")
        return proba

    def _make_finetuned(self) -> FineTunedEncoder:
        c = self.config
        return FineTunedEncoder(
            n_classes=c.n_classes,
            model_name=c.finetune_model,
            epochs=c.finetune_epochs,
            seed=c.seed,
        )

    def teacher_proba(self, data: LoopData) -> np.ndarray:
        """(n_pool, K) the probabilities the final model's pseudo-labels come from (see
        ``LoopConfig.final_teacher``): the ensemble's, times the label model's soft labels
        ^rule_power on the rule-covered rows for "product"."""
        c = self.config
        teacher = self.predict_proba(data.pool_X)
        if c.final_teacher == "product":
            covered, soft = self.soft_labels(data, self.round)
            if covered.size:
                teacher = np.clip(teacher, 1e-9, None)
                teacher[covered] *= np.clip(soft, 1e-9, None) ** c.rule_power
                teacher /= teacher.sum(axis=1, keepdims=True)
        return teacher

    # -- persistence
    def save(self, path: str | Path) -> None:
        """Write the whole state to folder ``path``: arrays in a new ``arrays-<id>.npz``, then
        ``state.json`` naming it (atomic replace), then old array files are removed; a crash at any
        point leaves the previous or the new state, never a mix."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "weights": self.weights,
            "large_error": self.large_error,
        }
        for i, p in enumerate(self.dev_probas):
            arrays[f"devproba{i}"] = p
        for i, m in enumerate(self.members):
            arrays.update({f"member{i}_{k}": v for k, v in m.model.state().items()})
            for f, fm in enumerate(m.fold_models):
                arrays.update({f"fold{f}member{i}_{k}": v for k, v in fm.state().items()})
        reviews = []
        for i, r in enumerate(self.reviews):
            cand, fields = _candidate_fields(r.candidate)
            for name, value in cand.items():
                arrays[f"review{i}_{name}"] = value
            reviews.append(
                {
                    "round": r.round,
                    "decision": r.decision,
                    "final_rule": None if r.final_rule is None else r.final_rule.to_dict(),
                    "candidate": fields,
                    "arrays": sorted(cand),
                }
            )
        if self.final is not None and self.final.on_texts:
            blob = self.final.model.state_bytes()
            arrays["finetuned_state"] = np.frombuffer(blob, dtype=np.uint8)
        elif self.final is not None:
            arrays.update({f"final_{k}": v for k, v in self.final.model.state().items()})
        if self.final is not None:
            arrays["final_pool_proba"] = self.final.pool_proba
            arrays["final_kept"] = self.final.kept
        state = {
            "format": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "seed_rules": [r.to_dict() for r in self.seed_rules],
            "n_seed_votes": self.n_seed_votes,
            "accepted": [r.to_dict() for r in self.accepted],
            "members": [
                {
                    "round": m.round,
                    "alpha": m.alpha,
                    "err": m.err,
                    "folds": len(m.fold_models),
                    "dev_key": m.dev_key,
                }
                for m in self.members
            ],
            "members_rules": self._members_rules,
            "history": self.history,
            "reviews": reviews,
            "finalized": self.final is not None,
        }
        arrays_file = f"arrays-{self.round}-{os.urandom(4).hex()}.npz"
        state["arrays_file"] = arrays_file
        _atomic_write(path / arrays_file, lambda f: np.savez(f, **arrays))
        _atomic_write(
            path / STATE_FILE, lambda f: f.write(json.dumps(state, indent=1).encode("utf-8"))
        )
        for old in path.glob("arrays-*.npz"):
            if old.name != arrays_file:
                old.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path) -> PRBoostLoop:
        """The loop saved in folder ``path``."""
        path = Path(path)
        if not (path / STATE_FILE).is_file():
            raise LoopError(f"{path}: no saved PRBoost loop (state.json is missing)")
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        if state.get("format") != FORMAT_VERSION:
            raise LoopError(f"{path}: unsupported state format {state.get('format')!r}")
        arrays_path = path / str(state.get("arrays_file", ""))
        if not arrays_path.is_file():
            raise LoopError(f"{arrays_path}: the state's array file is missing")
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        config = LoopConfig.from_dict(state["config"])
        loop = cls(
            config,
            n_dev=arrays["weights"].size,
            seed_rules=[rule_from_dict(d) for d in state["seed_rules"]],
            n_seed_votes=state["n_seed_votes"],
        )
        loop.weights = arrays["weights"]
        loop.large_error = arrays["large_error"].astype(np.int64)
        loop.accepted = [rule_from_dict(d) for d in state["accepted"]]
        for i, m in enumerate(state["members"]):
            prefix = f"member{i}_"
            sub = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            model = EmbeddingClassifier.from_state(sub)
            folds = []
            for f in range(m["folds"]):
                pre = f"fold{f}member{i}_"
                folds.append(
                    EmbeddingClassifier.from_state(
                        {k[len(pre) :]: v for k, v in arrays.items() if k.startswith(pre)}
                    )
                )
            member = Member(
                round=m["round"],
                model=model,
                alpha=m["alpha"],
                err=m["err"],
                fold_models=folds,
                dev_key=m.get("dev_key", ""),
            )
            loop.members.append(member)
        loop.dev_probas = [
            arrays[f"devproba{i}"] for i in range(len(loop.members)) if f"devproba{i}" in arrays
        ]
        loop._members_rules = state["members_rules"]
        loop.history = state["history"]
        for i, r in enumerate(state["reviews"]):
            cand_arrays = {name: arrays[f"review{i}_{name}"] for name in r["arrays"]}
            loop.reviews.append(
                Review(
                    candidate=_candidate_from_fields(r["candidate"], cand_arrays),
                    round=r["round"],
                    decision=r["decision"],
                    final_rule=None if r["final_rule"] is None else rule_from_dict(r["final_rule"]),
                )
            )
        if state["finalized"]:
            sub = {k[len("final_") :]: v for k, v in arrays.items() if k.startswith("final_")}
            if "finetuned_state" in arrays:
                model: Any = loop._make_finetuned().load_state_bytes(
                    arrays["finetuned_state"].tobytes()
                )
            else:
                model = EmbeddingClassifier.from_state(
                    {k: v for k, v in sub.items() if k.startswith(("cfg_", "param_"))}
                )
            loop.final = FinalModel(
                model=model,
                pool_proba=arrays["final_pool_proba"],
                kept=arrays["final_kept"],
            )
        return loop

    def summary(self) -> dict[str, Any]:
        """Counts for reports: rounds, reviewed, accepted, edited, rejected, rules in force."""
        decided = [r for r in self.reviews if r.decision != "pending"]
        return {
            "rounds": self.round,
            "reviewed": len(decided),
            "accepted": sum(r.decision in ("accepted", "edited") for r in decided),
            "edited": sum(r.decision == "edited" for r in decided),
            "rejected": sum(r.decision == "rejected" for r in decided),
            "rules_in_force": len(self.rules) + self.n_seed_votes,
        }


# --------------------------------------------------------------------------- helpers
def _folds(y: np.ndarray, n_folds: int, seed: int) -> list[np.ndarray]:
    """Stratified folds over the dev set (each class dealt round-robin after a seeded shuffle)."""
    rng = np.random.default_rng(seed)
    n_folds = min(n_folds, len(y))
    fold_of = np.zeros(len(y), dtype=np.int64)
    offset = 0
    for k in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == k))
        fold_of[rows] = (np.arange(rows.size) + offset) % n_folds
        offset += rows.size
    return [np.flatnonzero(fold_of == f) for f in range(n_folds) if np.any(fold_of == f)]


def _candidate_fields(cand: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split a Candidate into numpy arrays (saved in the npz) and JSON fields."""
    arrays: dict[str, np.ndarray] = {}
    fields: dict[str, Any] = {}
    items = (
        {f.name: getattr(cand, f.name) for f in dataclasses.fields(cand)}
        if dataclasses.is_dataclass(cand)
        else dict(vars(cand))
    )
    for name, value in items.items():
        if name == "rule":
            fields["rule"] = value.to_dict()
        elif isinstance(value, np.ndarray):
            arrays[name] = value
        elif isinstance(value, np.generic):
            fields[name] = value.item()
        else:
            fields[name] = value
    return arrays, fields


def _candidate_from_fields(fields: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    from models.prboost.propose import Candidate

    values = dict(fields)
    values["rule"] = rule_from_dict(values["rule"])
    values.update(arrays)
    return Candidate(**values)


def model_texts(texts: Sequence[str], entities: Sequence | None) -> list[str]:
    """What a text-reading model sees: the texts, entity-marked for relation extraction."""
    if entities is None:
        return list(texts)
    return [mark_entities(t, h, tl) for t, (h, tl) in zip(texts, entities)]


def _atomic_write(target: Path, write: Callable[[Any], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = [
    "FinalModel",
    "LoopConfig",
    "LoopData",
    "LoopError",
    "Member",
    "PRBoostLoop",
    "Review",
    "rule_key",
]
