"""Cross-fitted soft labels: each example is labeled by a teacher that never trained on it.

A teacher fine-tuned on its own training texts gives them near one-hot labels (top probability
0.98–0.99 measured), which leaves PTLoss nothing to correct. ``cross_fit`` splits the labeled
rows into K folds, trains one teacher per fold on the others and labels the held-out fold with it;
sets outside the training rows (dev, test, the unlabeled pool) get the mean of the fold teachers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.progress import Progress, ensure_progress, scaled

FitPredict = Callable[[np.ndarray, np.ndarray, Progress], tuple[np.ndarray, np.ndarray | None]]
"""fit_predict(train_idx, heldout_idx, progress) -> (probs on heldout (h, K), probs on the
caller's extra set (e, K) or None): train a teacher on ``train_idx`` rows only."""


@dataclass
class CrossFit:
    """Out-of-fold soft labels ``oof`` (n, K), each row's ``fold`` (n,), and the fold teachers'
    mean on the extra set ``extra`` (e, K) (None when fit_predict returns none)."""

    oof: np.ndarray
    fold: np.ndarray
    extra: np.ndarray | None


def cross_fit(
    n: int,
    fit_predict: FitPredict,
    n_folds: int = 5,
    seed: int = 0,
    progress: Progress | None = None,
) -> CrossFit:
    """K-fold soft labels for n rows (see ``FitPredict``); folds are a seeded random split."""
    if n_folds < 2 or n < n_folds:
        raise ValueError(f"need n_folds >= 2 and at least n_folds rows, got {n_folds} for {n}")
    progress = ensure_progress(progress)
    fold = np.random.default_rng(seed).permutation(n) % n_folds  # (n,)
    oof: np.ndarray | None = None
    extras: list[np.ndarray] = []
    for f in range(n_folds):
        held = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        sub = scaled(progress, f / n_folds, (f + 1) / n_folds)
        probs, extra = fit_predict(train, held, sub)
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape[0] != held.size:
            raise ValueError(f"fold {f}: {probs.shape[0]} predictions for {held.size} rows")
        if oof is None:
            oof = np.zeros((n, probs.shape[1]))
        oof[held] = probs
        if extra is not None:
            extras.append(np.asarray(extra, dtype=np.float64))
        progress((f + 1) / n_folds, f"cross-fitting: fold {f + 1}/{n_folds} labeled")
    mean_extra = np.mean(extras, axis=0) if extras else None
    return CrossFit(oof=oof, fold=fold, extra=mean_extra)
