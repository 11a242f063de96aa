"""Label models: turn a sparse label matrix (n, m) of rule votes into soft labels (n, K).

All three share one interface: ``fit(L, n_classes, L_dev=None, y_dev=None, seed=0) -> self`` and
``predict_proba(L) -> (n, K)``; rows no rule votes on get the uniform distribution.

- ``MajorityVote``: the most voted class; a tie splits the probability evenly among the tied
  classes (Snorkel's ``MajorityLabelVoter`` does the same).
- ``WeightedVote``: each rule votes with weight log(acc (K-1) / (1 - acc)), acc being its smoothed
  dev accuracy (correct + 1) / (matched + 2) (rules no better than chance get weight 0); the soft
  label is the softmax of the summed weights, i.e. the posterior under a symmetric-noise model with
  a uniform class prior. Without dev data every rule weighs 1.
- ``SnorkelLabelModel``: the ``snorkel`` package's ``LabelModel`` (matrix-completion estimate of
  each rule's P(vote | class)), made to work on a sparse matrix of any size: the overlap matrix O
  it trains on (m K x m K) is computed with sparse products in row chunks instead of from Snorkel's
  dense one-hot (n x m K) matrix, and prediction runs in row chunks. Below 3 rules: majority vote.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from models.prboost.matching import LabelMatrix

PREDICT_CHUNK = 262_144  # rows per chunk in predict_proba and the overlap matrix


class LabelModelLike(Protocol):
    n_classes: int

    def fit(
        self,
        L: LabelMatrix,
        n_classes: int,
        L_dev: LabelMatrix | None = None,
        y_dev: np.ndarray | None = None,
        seed: int = 0,
    ) -> LabelModelLike: ...

    def predict_proba(self, L: LabelMatrix) -> np.ndarray: ...


def _as_label_matrix(L: Any) -> LabelMatrix:
    if isinstance(L, LabelMatrix):
        return L
    if isinstance(L, np.ndarray):
        return LabelMatrix.from_dense(L)
    raise TypeError(f"expected a LabelMatrix or a dense (n, m) vote array, got {type(L).__name__}")


def _check_classes(L: LabelMatrix, n_classes: int) -> None:
    if n_classes < 2:
        raise ValueError(f"a label model needs at least 2 classes, got {n_classes}")
    if L.max_label() >= n_classes:
        raise ValueError(
            f"the label matrix holds vote {L.max_label()}, out of range for {n_classes} classes"
        )


def _check_dev(
    L: LabelMatrix, L_dev: LabelMatrix | None, y_dev: np.ndarray | None
) -> tuple[LabelMatrix | None, np.ndarray | None]:
    if L_dev is None or y_dev is None:
        return None, (None if y_dev is None else np.asarray(y_dev, dtype=np.int64).reshape(-1))
    L_dev = _as_label_matrix(L_dev)
    y_dev = np.asarray(y_dev, dtype=np.int64).reshape(-1)
    if L_dev.m != L.m:
        raise ValueError(f"L_dev has {L_dev.m} rules, L has {L.m}")
    if y_dev.shape[0] != L_dev.n:
        raise ValueError(f"y_dev has {y_dev.shape[0]} labels for {L_dev.n} dev rows")
    return L_dev, y_dev


def _uniform_uncovered(proba: np.ndarray, covered: np.ndarray) -> np.ndarray:
    proba[~covered] = 1.0 / proba.shape[1]
    return proba


def _softmax_rows(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores


def dev_accuracies(
    L_dev: LabelMatrix, y_dev: np.ndarray, prior: tuple[float, float] = (1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per rule on the dev set: (correct (m,), matched (m,), smoothed accuracy (m,)).

    Only dev rows with a known label (y >= 0) count. Smoothed accuracy is the posterior mean under
    a Beta(a, b) prior: (correct + a) / (matched + a + b); the default Beta(1, 1) gives Laplace's
    (correct + 1) / (matched + 2), 0.5 for a rule with no dev matches.
    """
    csc = L_dev.csc
    cols = np.repeat(np.arange(L_dev.m), np.diff(csc.indptr))
    rows = csc.indices
    votes = csc.data.astype(np.int64) - 1
    known = y_dev[rows] >= 0
    hit = known & (votes == y_dev[rows])
    matched = np.bincount(cols[known], minlength=L_dev.m).astype(np.int64)
    correct = np.bincount(cols[hit], minlength=L_dev.m).astype(np.int64)
    a, b = prior
    return correct, matched, (correct + a) / (matched + a + b)


class MajorityVote:
    """The most voted class per example; ties split evenly among the tied classes."""

    def __init__(self) -> None:
        self.n_classes = 0

    def fit(
        self,
        L: LabelMatrix,
        n_classes: int,
        L_dev: LabelMatrix | None = None,
        y_dev: np.ndarray | None = None,
        seed: int = 0,
    ) -> MajorityVote:
        L = _as_label_matrix(L)
        _check_classes(L, n_classes)
        self.n_classes = int(n_classes)
        return self

    def predict_proba(self, L: LabelMatrix) -> np.ndarray:
        L = _as_label_matrix(L)
        _require_fitted(self)
        _check_classes(L, self.n_classes)
        out = np.empty((L.n, self.n_classes), dtype=np.float64)
        for lo in range(0, L.n, PREDICT_CHUNK):
            part = L.rows(slice(lo, lo + PREDICT_CHUNK))
            counts = part.class_counts(self.n_classes)  # (c, K)
            top = counts == counts.max(axis=1, keepdims=True)
            out[lo : lo + part.n] = top / top.sum(axis=1, keepdims=True)
        return _uniform_uncovered(out, L.covered())

    def predict(self, L: LabelMatrix) -> np.ndarray:
        return _predict(self, L)


class WeightedVote:
    """Votes weighted by log-odds of each rule's smoothed dev accuracy (see the module doc)."""

    def __init__(self, prior: tuple[float, float] = (1.0, 1.0), max_weight: float = 10.0) -> None:
        self.prior = prior
        self.max_weight = max_weight
        self.n_classes = 0
        self.weights_: np.ndarray | None = None  # (m,)
        self.accuracies_: np.ndarray | None = None  # (m,) smoothed dev accuracy, or None

    def fit(
        self,
        L: LabelMatrix,
        n_classes: int,
        L_dev: LabelMatrix | None = None,
        y_dev: np.ndarray | None = None,
        seed: int = 0,
    ) -> WeightedVote:
        L = _as_label_matrix(L)
        _check_classes(L, n_classes)
        L_dev, y_dev = _check_dev(L, L_dev, y_dev)
        self.n_classes = int(n_classes)
        if L_dev is None:
            self.accuracies_ = None
            self.weights_ = np.ones(L.m)
            return self
        _, _, acc = dev_accuracies(L_dev, y_dev, self.prior)
        k = self.n_classes
        weights = np.log(acc * (k - 1) / (1.0 - acc))
        self.accuracies_ = acc
        self.weights_ = np.clip(weights, 0.0, self.max_weight)
        return self

    def predict_proba(self, L: LabelMatrix) -> np.ndarray:
        L = _as_label_matrix(L)
        _require_fitted(self)
        _check_classes(L, self.n_classes)
        if L.m != self.weights_.shape[0]:
            raise ValueError(f"fitted on {self.weights_.shape[0]} rules, got {L.m}")
        out = np.empty((L.n, self.n_classes), dtype=np.float64)
        for lo in range(0, L.n, PREDICT_CHUNK):
            csr = L.rows(slice(lo, lo + PREDICT_CHUNK)).csr
            rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
            scores = sp.csr_array(
                (self.weights_[csr.indices], (rows, csr.data.astype(np.int64) - 1)),
                shape=(csr.shape[0], self.n_classes),
            ).toarray()
            out[lo : lo + csr.shape[0]] = _softmax_rows(scores)
        return _uniform_uncovered(out, L.covered())

    def predict(self, L: LabelMatrix) -> np.ndarray:
        return _predict(self, L)


def overlap_matrix(L: LabelMatrix, n_classes: int, chunk: int = PREDICT_CHUNK) -> np.ndarray:
    """Snorkel's O = A^T A / n (m K, m K) float64, A being the one-hot (n, m K) vote indicator.

    A[i, j K + y] = 1 when rule j votes y on example i; computed in row chunks from the sparse
    matrix, never building A densely.
    """
    d = L.m * n_classes
    out = np.zeros((d, d), dtype=np.float64)
    for lo in range(0, L.n, chunk):
        A = _one_hot(L.rows(slice(lo, lo + chunk)), n_classes)
        out += (A.T @ A).toarray()
    return out / max(L.n, 1)


def _one_hot(L: LabelMatrix, n_classes: int) -> sp.csr_array:
    """(n, m K) float64 indicator of votes, the layout of Snorkel's ``_create_L_ind``."""
    csr = L.csr
    cols = csr.indices.astype(np.int64) * n_classes + (csr.data.astype(np.int64) - 1)
    return sp.csr_array(
        (np.ones(cols.size), cols, csr.indptr.astype(np.int64)),
        shape=(L.n, L.m * n_classes),
    )


class SnorkelLabelModel:
    """Snorkel's ``LabelModel`` trained from the sparse overlap matrix; chunked prediction.

    Training options are Snorkel's (``n_epochs``, ``lr``, ``l2``, ``optimizer``, ``prec_init``,
    ``mu_eps``...). The class balance comes from ``y_dev`` when given (add-one smoothed, so no class
    has prior 0), else uniform. With fewer than 3 rules it falls back to ``MajorityVote``
    (``fallback_`` tells). Snorkel reseeds the global random generators; we restore them after fit.

    ``abstain_evidence=True`` also counts each abstaining rule's P(abstain | y) in the posterior
    (the full conditionally-independent model); the default, like Snorkel, ignores abstains.
    ``torch_threads`` (default 1) bounds torch's threads during fit: the (m K)^2 problem is small
    and on a busy machine extra threads only contend; the previous setting is restored.
    ``device``: where Snorkel fits ("cpu", the default: the problem is small; "cuda", "cuda:1";
    "auto" = a GPU when this process sees one, else the CPU). Snorkel takes the device in its
    model's config (``LabelModel(device=...)``) and refuses a CUDA device without CUDA.
    """

    def __init__(
        self,
        n_epochs: int = 100,
        lr: float = 0.01,
        l2: float = 0.0,
        optimizer: str = "sgd",
        class_balance: Sequence[float] | None = None,
        abstain_evidence: bool = False,
        torch_threads: int | None = 1,
        device: str = "cpu",
        **train_kwargs: Any,
    ) -> None:
        self.abstain_evidence = bool(abstain_evidence)
        self.torch_threads = torch_threads
        self.device = device
        self.train_kwargs = {"n_epochs": n_epochs, "lr": lr, "l2": l2, "optimizer": optimizer}
        self.train_kwargs.update(train_kwargs)
        self.class_balance = None if class_balance is None else list(class_balance)
        self.n_classes = 0
        self.model_: Any = None
        self.fallback_: MajorityVote | None = None
        self.n_rules_ = 0

    def fit(
        self,
        L: LabelMatrix,
        n_classes: int,
        L_dev: LabelMatrix | None = None,
        y_dev: np.ndarray | None = None,
        seed: int = 0,
    ) -> SnorkelLabelModel:
        import torch

        L = _as_label_matrix(L)
        _check_classes(L, n_classes)
        _, y_dev = _check_dev(L, L_dev, y_dev)
        k = self.n_classes = int(n_classes)
        self.n_rules_ = L.m
        if L.m < 3:
            self.fallback_ = MajorityVote().fit(L, k)
            self.model_ = None
            return self
        self.fallback_ = None
        if self.class_balance is not None:
            balance = np.asarray(self.class_balance, dtype=np.float64)
            if balance.shape != (k,) or (balance <= 0).any():
                raise ValueError(f"class_balance needs {k} positive numbers, got {balance}")
            balance = balance / balance.sum()
        elif y_dev is not None and (y_dev >= 0).any():
            known = y_dev[y_dev >= 0]
            if known.max() >= k:
                raise ValueError(f"y_dev holds label {known.max()}, out of range for {k} classes")
            counts = np.bincount(known, minlength=k) + 1.0
            balance = counts / counts.sum()
        else:
            balance = np.full(k, 1.0 / k)
        overlap = overlap_matrix(L, k)  # (m K, m K)
        cov = np.diff(L.csc.indptr) / max(L.n, 1)
        np_state = np.random.get_state()
        py_state = random.getstate()
        threads = torch.get_num_threads()
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        device = label_model_device(self.device)
        cuda = device.startswith("cuda") and torch.cuda.is_available()  # else Snorkel refuses
        on_gpu = [torch.device(device).index or 0] if cuda else []
        with torch.random.fork_rng(devices=on_gpu):
            try:
                model = _OverlapLabelModel(cardinality=k, verbose=False, device=device)
                model.fit_overlap(
                    overlap,
                    n=L.n,
                    m=L.m,
                    coverage=cov,
                    class_balance=balance,
                    seed=seed,
                    **self.train_kwargs,
                )
            finally:
                np.random.set_state(np_state)
                random.setstate(py_state)
                torch.set_num_threads(threads)
        self.model_ = model
        return self

    @property
    def rule_accuracies(self) -> np.ndarray:
        """(m,) Snorkel's estimated accuracy of each rule where it votes."""
        _require_fitted(self)
        if self.model_ is None:
            return np.full(self.n_rules_, np.nan)
        return self.model_.get_weights()

    def predict_proba(self, L: LabelMatrix) -> np.ndarray:
        L = _as_label_matrix(L)
        _require_fitted(self)
        if self.fallback_ is not None:
            return self.fallback_.predict_proba(L)
        _check_classes(L, self.n_classes)
        if L.m != self.n_rules_:
            raise ValueError(f"fitted on {self.n_rules_} rules, got {L.m}")
        k = self.n_classes
        mu = self.model_.mu.detach().cpu().numpy().astype(np.float64)  # (m K, K)
        log_mu = np.log(mu)
        base = np.log(self.model_.p)  # (K,)
        if self.abstain_evidence:
            # P(rule j abstains | y) = 1 - sum_v P(rule j votes v | y)
            abstain = np.clip(1.0 - mu.reshape(self.n_rules_, k, k).sum(axis=1), 1e-6, 1.0)
            log_abstain = np.log(abstain)  # (m, K)
            base = base + log_abstain.sum(axis=0)
            log_mu = log_mu - np.repeat(log_abstain, k, axis=0)
        out = np.empty((L.n, k), dtype=np.float64)
        for lo in range(0, L.n, PREDICT_CHUNK):
            A = _one_hot(L.rows(slice(lo, lo + PREDICT_CHUNK)), k)  # (c, m K)
            out[lo : lo + A.shape[0]] = _softmax_rows(A @ log_mu + base)
        return _uniform_uncovered(out, L.covered())

    def predict(self, L: LabelMatrix) -> np.ndarray:
        return _predict(self, L)


def label_model_device(device: str | None) -> str:
    """The torch device a label model fits on: "auto" (or None) = "cuda" when this process sees a
    GPU, else "cpu"; anything else as given ("cpu", "cuda", "cuda:1")."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"label model device must be 'cpu', 'cuda[:N]' or 'auto', not {device!r}")
    return device


def _require_fitted(model: Any) -> None:
    if not getattr(model, "n_classes", 0):
        raise RuntimeError(f"{type(model).__name__} is not fitted: call fit(L, n_classes) first")


def _predict(model: Any, L: LabelMatrix) -> np.ndarray:
    """Hard labels (n,): the most probable class, -1 where no rule votes."""
    L = _as_label_matrix(L)
    proba = model.predict_proba(L)
    out = proba.argmax(axis=1).astype(np.int64)
    out[~L.covered()] = -1
    return out


def _snorkel_base():
    from snorkel.labeling.model.label_model import LabelModel as SnorkelBase

    return SnorkelBase


class _OverlapLabelModel(_snorkel_base()):
    """Snorkel's LabelModel with a fit that starts from a precomputed overlap matrix O.

    The body mirrors ``snorkel.labeling.model.LabelModel.fit`` (snorkel 0.10) step for step, minus
    the dense one-hot matrix; the loss, initialization, clamping and symmetry breaking are
    Snorkel's own methods.
    """

    def _loss_mu(self, l2: float = 0) -> Any:
        """Snorkel's loss, the masked norm written as a product with a 0/1 mask: same value and
        gradient, without gathering/scattering the (m K)^2 masked entries every epoch (10x faster
        for many rules and classes)."""
        import torch

        if not hasattr(self, "_mask_float") or self._mask_float.shape != self.mask.shape:
            self._mask_float = self.mask.to(self.O.dtype)
        residual = (self.O - self.mu @ self.P @ self.mu.t()) * self._mask_float
        loss_1 = (residual * residual).sum()
        loss_2 = torch.norm(torch.sum(self.mu @ self.P, 1) - torch.diag(self.O)) ** 2
        return loss_1 + loss_2 + self._loss_l2(l2=l2)

    def fit_overlap(
        self,
        overlap: np.ndarray,
        *,
        n: int,
        m: int,
        coverage: np.ndarray,
        class_balance: np.ndarray,
        seed: int,
        **kwargs: Any,
    ) -> None:
        import torch
        from snorkel.labeling.model.label_model import TrainConfig, _CliqueData
        from snorkel.utils.config_utils import merge_config

        k = self.cardinality
        if overlap.shape != (m * k, m * k):
            raise ValueError(f"overlap must be ({m * k}, {m * k}), got {overlap.shape}")
        self.train_config = merge_config(TrainConfig(), {**kwargs, "seed": int(seed)})
        random.seed(self.train_config.seed)
        np.random.seed(self.train_config.seed)
        torch.manual_seed(self.train_config.seed)
        self._set_logger()
        self.n, self.m, self.t = int(n), int(m), 1
        self._set_class_balance(list(class_balance), None)
        self._create_tree()
        self.coverage = np.asarray(coverage, dtype=np.float64)
        self.c_data = {
            i: _CliqueData(
                start_index=i * k,
                end_index=(i + 1) * k,
                max_cliques={
                    j for j in self.c_tree.nodes() if i in self.c_tree.nodes[j]["members"]
                },
            )
            for i in range(self.m)
        }
        self.d = self.m * k
        self.O = torch.from_numpy(overlap).float().to(self.config.device)
        self._init_params()
        self.train()
        self.mu_init = self.mu_init.to(self.config.device)
        self.to(self.config.device)
        self._set_optimizer()
        self._set_lr_scheduler()
        for epoch in range(self.train_config.n_epochs):
            self.running_loss = 0.0
            self.running_examples = 0
            self.optimizer.zero_grad()
            loss = self._loss_mu(l2=self.train_config.l2)
            if torch.isnan(loss):
                raise FloatingPointError(
                    "the label model's loss became NaN; lower the learning rate"
                )
            loss.backward()
            self.optimizer.step()
            self._execute_logging(loss)
            self._update_lr_scheduler(epoch)
        self._clamp_params()
        self._break_col_permutation_symmetry()
        self.eval()


LABEL_MODELS = ("majority", "weighted", "snorkel", "auto")


def make_label_model(
    name: str = "auto", n_rules: int | None = None, *, device: str = "cpu", **kwargs: Any
) -> LabelModelLike:
    """A label model by name: "majority", "weighted", "snorkel", or "auto" (majority vote below 3
    rules, Snorkel's LabelModel from 3 on; ``n_rules`` decides, unknown -> Snorkel, which falls
    back to majority vote itself when fitted on fewer than 3 rules). ``device`` is where Snorkel
    fits (the votes run on the CPU: they are counts)."""
    if name == "majority":
        return MajorityVote(**kwargs)
    if name == "weighted":
        return WeightedVote(**kwargs)
    if name == "snorkel":
        return SnorkelLabelModel(device=device, **kwargs)
    if name == "auto":
        if n_rules is not None and n_rules < 3:
            return MajorityVote()
        return SnorkelLabelModel(device=device, **kwargs)
    raise ValueError(f"unknown label model {name!r}; choose one of {LABEL_MODELS}")
