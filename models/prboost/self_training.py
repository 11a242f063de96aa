"""The final PRBoost step: self-train a model on the pool U with sharpened soft pseudo-labels from
the boosted ensemble, keeping only confident examples, together with the gold dev labels.

One iteration:
  q = sharpen(p, T) = p^(1/T) / Σ_k p_k^(1/T)          (T < 1 sharpens)
  keep i when max_k q_ik ≥ threshold (at most ``max_per_class`` per predicted class, most confident
  first, so one easy class cannot drown the rest)
  fit the model on dev (gold, weight ``dev_weight`` each) + kept pool examples (soft q, weight 1)
Later iterations mix the teacher with the student: p ← (1 − mix)·p_teacher + mix·p_student.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from models.progress import Progress, ensure_progress


def sharpen(p: np.ndarray, temperature: float = 0.5) -> np.ndarray:
    """p^(1/T), row-normalized; T = 1 leaves p unchanged, T → 0 tends to one-hot."""
    if not temperature > 0:
        raise ValueError("temperature must be positive")
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, None)
    logq = np.log(p) / temperature
    logq -= logq.max(axis=1, keepdims=True)
    q = np.exp(logq)
    return q / q.sum(axis=1, keepdims=True)


def confident_indices(
    q: np.ndarray, threshold: float, max_per_class: int | None = None
) -> np.ndarray:
    """Sorted rows with max q ≥ threshold, capped per predicted class (most confident first)."""
    conf = q.max(axis=1)
    pred = q.argmax(axis=1)
    keep = np.flatnonzero(conf >= threshold)
    if max_per_class is not None:
        chosen = []
        for k in np.unique(pred[keep]):
            rows = keep[pred[keep] == k]
            rows = rows[np.argsort(-conf[rows], kind="stable")[:max_per_class]]
            chosen.append(rows)
        keep = np.sort(np.concatenate(chosen)) if chosen else keep
    return keep.astype(np.int64)


@dataclass
class SelfTrainingResult:
    model: object  # the final fitted model (predict_proba)
    pseudo_labels: np.ndarray  # (n_pool, K) last sharpened pseudo-labels
    kept: np.ndarray  # pool indices the last fit used
    history: list[dict] = field(default_factory=list)  # per iteration: kept, threshold


def self_train(
    teacher_proba: np.ndarray,
    X_pool,
    X_dev,
    y_dev: np.ndarray,
    make_model: Callable[[], object],
    *,
    temperature: float = 0.5,
    threshold: float = 0.9,
    max_per_class: int | None = None,
    dev_weight: float = 1.0,
    iterations: int = 1,
    mix: float = 0.5,
    take: Callable | None = None,
    progress: Progress | None = None,
) -> SelfTrainingResult:
    """Train the final model; returns it with the pseudo-labels and kept pool indices.

    teacher_proba (n_pool, K): the ensemble's probabilities on the pool. X_pool / X_dev: the
    model's inputs (feature matrices, or text lists with ``take(inputs, idx)`` for other learners).
    ``make_model()`` builds a fresh learner with ``fit(X, y, sample_weight)`` and ``predict_proba``.
    With no dev labels (``y_dev`` empty) the model trains on pseudo-labels only.
    """
    progress = ensure_progress(progress)
    take = take or _take
    teacher = np.asarray(teacher_proba, dtype=np.float64)
    y_dev = np.asarray(y_dev, dtype=np.int64)
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    K = teacher.shape[1]
    p = teacher
    model = None
    history: list[dict] = []
    q = sharpen(p, temperature)
    kept = np.zeros(0, dtype=np.int64)
    for it in range(iterations):
        q = sharpen(p, temperature)
        kept = confident_indices(q, threshold, max_per_class)
        dev_rows = np.flatnonzero(y_dev >= 0)
        if kept.size == 0 and dev_rows.size == 0:
            raise ValueError(
                f"no pool example reaches confidence {threshold} and there are no dev labels"
            )
        Y_dev = np.eye(K)[y_dev[dev_rows]]
        X = _concat(take(X_dev, dev_rows), take(X_pool, kept))
        Y = np.concatenate([Y_dev, q[kept]])
        w = np.concatenate([np.full(dev_rows.size, dev_weight), np.ones(kept.size)])
        model = make_model()
        model.fit(X, Y, sample_weight=w)
        history.append({"iteration": it, "kept": int(kept.size), "threshold": threshold})
        progress((it + 1) / iterations, f"self-training {it + 1}/{iterations}: {kept.size} kept")
        if it + 1 < iterations:
            p = (1 - mix) * teacher + mix * model.predict_proba(X_pool)
    return SelfTrainingResult(model=model, pseudo_labels=q, kept=kept, history=history)


def _take(inputs, idx: np.ndarray):
    if hasattr(inputs, "shape"):  # a dense array or a sparse matrix
        return inputs[idx]
    return [inputs[i] for i in idx]


def _concat(a, b):
    import scipy.sparse as sp

    if sp.issparse(a) or sp.issparse(b):
        return sp.vstack([sp.csr_matrix(a), sp.csr_matrix(b)], format="csr")
    if isinstance(a, np.ndarray):
        return np.concatenate([a, b])
    return list(a) + list(b)
