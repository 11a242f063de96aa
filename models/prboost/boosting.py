"""AdaBoost-SAMME over the gold dev set: α per round, weight updates, large-error instances and
the α-weighted ensemble.

Zhu et al., "Multi-class AdaBoost" (2009). With K classes and weighted error err:
    α = log((1 − err) / err) + log(K − 1)
    w_i ← w_i · exp(α · [m(x_i) ≠ y_i]),  then renormalized to sum to 1.
α > 0 exactly when err < (K − 1) / K (better than chance), and then misclassified weights grow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# err is clipped into [EPS, 1 − EPS] so a perfect (or perfectly wrong) learner gets a finite α.
EPS = 1e-6


def weighted_error(weights: np.ndarray, wrong: np.ndarray) -> float:
    """err = Σ w_i·[wrong_i] / Σ w_i for weights (n,) ≥ 0 and a boolean mask wrong (n,)."""
    weights = np.asarray(weights, dtype=np.float64)
    wrong = np.asarray(wrong, dtype=bool)
    if weights.shape != wrong.shape:
        raise ValueError(f"weights {weights.shape} and wrong {wrong.shape} differ in shape")
    total = float(weights.sum())
    if not total > 0:
        raise ValueError("weights must have a positive sum")
    return float(weights[wrong].sum() / total)


def samme_alpha(err: float, n_classes: int) -> float:
    """α = log((1 − err)/err) + log(K − 1), err clipped to [EPS, 1 − EPS]."""
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    if not 0.0 <= err <= 1.0:
        raise ValueError(f"err must lie in [0, 1], got {err}")
    err = min(max(err, EPS), 1.0 - EPS)
    return float(np.log((1.0 - err) / err) + np.log(n_classes - 1))


def samme_update(weights: np.ndarray, wrong: np.ndarray, alpha: float) -> np.ndarray:
    """w_i ← w_i · exp(α·[wrong_i]), renormalized to sum 1. Returns a new (n,) float64 array."""
    weights = np.asarray(weights, dtype=np.float64)
    wrong = np.asarray(wrong, dtype=bool)
    if weights.shape != wrong.shape:
        raise ValueError(f"weights {weights.shape} and wrong {wrong.shape} differ in shape")
    if np.any(weights < 0) or not weights.sum() > 0:
        raise ValueError("weights must be non-negative with a positive sum")
    # Work in log space so many rounds with large α cannot overflow.
    with np.errstate(divide="ignore"):
        log_w = np.log(weights) + alpha * wrong
    log_w -= log_w[np.isfinite(log_w)].max()
    new = np.exp(log_w)
    return new / new.sum()


def large_error_indices(
    weights: np.ndarray,
    wrong: np.ndarray,
    n: int = 10,
    *,
    labels: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Indices of (at most) n misclassified examples with the largest weights.

    Ties (weights equal to 9 significant digits, e.g. all of them before the first update) are
    broken by a random order drawn from ``seed``, never by index: a dev file sorted by class
    must not make every instance come from its first class. With ``labels`` (n_dev,) the picks
    are spread over the gold classes: each class's misclassified examples are ordered by weight,
    then taken round-robin (the r-th heaviest of every class before any class's (r+1)-th, the
    heavier first within a turn), so no class crowds out the rest.
    """
    weights = np.asarray(weights, dtype=np.float64)
    wrong_idx = np.flatnonzero(np.asarray(wrong, dtype=bool))
    if n <= 0 or wrong_idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    shuffled = wrong_idx[rng.permutation(wrong_idx.size)]
    top = float(weights[wrong_idx].max())
    key = np.round(weights[shuffled] / top, 9) if top > 0 else np.zeros(shuffled.size)
    ordered = shuffled[np.argsort(-key, kind="stable")]  # heaviest first, random among ties
    if labels is None:
        return ordered[:n].astype(np.int64)
    labels = np.asarray(labels)
    rank = np.zeros(ordered.size, dtype=np.int64)  # position of each example within its class
    seen: dict[int, int] = {}
    for j, i in enumerate(ordered):
        y = int(labels[i])
        rank[j] = seen.get(y, 0)
        seen[y] = rank[j] + 1
    turn = np.lexsort((np.arange(ordered.size), rank))  # by rank, then by weight order
    return ordered[turn][:n].astype(np.int64)


@dataclass
class Ensemble:
    """α-weighted average of member probabilities: p(x) = Σ_t α_t p_t(x) / Σ_t α_t.

    Members are any objects with ``predict_proba(X) -> (n, K)``; members with α ≤ 0 (no better than
    chance) are kept for the record but carry no weight.
    """

    n_classes: int
    members: list = field(default_factory=list)
    alphas: list[float] = field(default_factory=list)

    def add(self, member, alpha: float) -> None:
        self.members.append(member)
        self.alphas.append(float(alpha))

    def __len__(self) -> int:
        return len(self.members)

    def effective_alphas(self) -> np.ndarray:
        return np.clip(np.asarray(self.alphas, dtype=np.float64), 0.0, None)

    def combine(self, probas: list[np.ndarray]) -> np.ndarray:
        """Average precomputed member probabilities (each (n, K)) with the ensemble's α."""
        if len(probas) != len(self.members):
            raise ValueError(f"{len(probas)} probability arrays for {len(self.members)} members")
        return average_probas(probas, self.effective_alphas(), self.n_classes)

    def predict_proba(self, X) -> np.ndarray:
        """(n, K): Σ α_t p_t(X) / Σ α_t; uniform when no member has positive α."""
        if not self.members:
            raise ValueError("the ensemble has no members yet")
        alphas = self.effective_alphas()
        if not np.any(alphas > 0):
            return np.full((X.shape[0], self.n_classes), 1.0 / self.n_classes)
        probas = [m.predict_proba(X) if a > 0 else None for m, a in zip(self.members, alphas)]
        return average_probas(probas, alphas, self.n_classes)

    def predict(self, X) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


def average_probas(probas: list, alphas: np.ndarray, n_classes: int) -> np.ndarray:
    """Σ α_t p_t / Σ α_t over members with α_t > 0 (entries for α_t ≤ 0 may be None)."""
    alphas = np.asarray(alphas, dtype=np.float64)
    used = [(a, p) for a, p in zip(alphas, probas) if a > 0]
    if not used:
        sizes = [p.shape[0] for p in probas if p is not None]
        if not sizes:
            raise ValueError("no member has positive α and no probabilities were given")
        return np.full((sizes[0], n_classes), 1.0 / n_classes)
    total = sum(a for a, _ in used)
    out = sum(a * np.asarray(p, dtype=np.float64) for a, p in used) / total
    return out
