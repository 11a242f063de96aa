"""Choosing PTLoss's ε without training a student per candidate.

Sample S candidate ε matrices (K, M), ε = 0 (plain KD) always first; compute each one's proxy
teacher on the labeled dev set (teacher probabilities from a teacher that did not train on those
texts) and keep the ε whose proxy teacher is closest to the one-hot dev labels in mean squared
distance. Total variation is reported beside it. When no candidate beats ε = 0 on dev, the
selection is ε = 0 and PTLoss is KD.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.ptloss.proxy import is_valid_eps, proxy_teacher


def sample_eps(
    n_classes: int,
    order: int = 5,
    n_candidates: int = 64,
    seed: int = 0,
    scale: tuple[float, float] = (0.05, 5.0),
) -> np.ndarray:
    """(S, K, M) candidates: index 0 is ε = 0; the others are s · U(−0.5, 1)^(K×M) with s
    log-uniform in ``scale``, redrawn (then halved) until every f_k stays decreasing and convex."""
    if n_classes < 2 or order < 1 or n_candidates < 1:
        raise ValueError("need n_classes >= 2, order >= 1, n_candidates >= 1")
    rng = np.random.default_rng(seed)
    out = np.zeros((n_candidates, n_classes, order))
    lo, hi = np.log(scale[0]), np.log(scale[1])
    for i in range(1, n_candidates):
        s = float(np.exp(rng.uniform(lo, hi)))
        for _ in range(50):
            eps = s * rng.uniform(-0.5, 1.0, size=(n_classes, order))
            if is_valid_eps(eps):
                break
            s *= 0.8
        else:  # pragma: no cover - positive ε is always valid
            eps = np.abs(eps)
        out[i] = eps
    return out


@dataclass
class Selection:
    """The chosen ε (K, M) and every candidate's dev distances (S,); index 0 is ε = 0."""

    eps: np.ndarray  # (K, M)
    index: int
    candidates: np.ndarray  # (S, K, M)
    mse: np.ndarray  # (S,) mean over dev rows of Σ_k (q_k − y_k)²
    tv: np.ndarray  # (S,) mean over dev rows of ½ Σ_k |q_k − y_k|

    @property
    def is_kd(self) -> bool:
        return not np.any(self.eps)

    def summary(self) -> dict:
        return {
            "index": self.index,
            "is_kd": self.is_kd,
            "mse": float(self.mse[self.index]),
            "tv": float(self.tv[self.index]),
            "mse_kd": float(self.mse[0]),
            "tv_kd": float(self.tv[0]),
            "n_candidates": int(len(self.mse)),
            "eps": self.eps.round(4).tolist(),
        }


def select_eps(
    teacher_dev: np.ndarray,
    labels_dev: np.ndarray,
    candidates: np.ndarray | None = None,
    *,
    order: int = 5,
    n_candidates: int = 64,
    seed: int = 0,
) -> Selection:
    """Pick ε by the proxy teacher's mean squared distance to one-hot dev labels.

    teacher_dev (n, K) teacher probabilities on dev texts, labels_dev (n,) gold ints. Without
    ``candidates`` (S, K, M), S = n_candidates are drawn by ``sample_eps``.
    """
    p = np.asarray(teacher_dev, dtype=np.float64)
    y = np.asarray(labels_dev, dtype=np.int64)
    if p.ndim != 2 or y.shape != (p.shape[0],) or p.shape[0] == 0:
        raise ValueError("need teacher_dev (n, K) and labels_dev (n,) with n >= 1")
    K = p.shape[1]
    if candidates is None:
        candidates = sample_eps(K, order, n_candidates, seed)
    candidates = np.asarray(candidates, dtype=np.float64)
    if candidates.ndim != 3 or candidates.shape[1] != K:
        raise ValueError(f"candidates must be (S, K={K}, M), got {candidates.shape}")
    if np.any(candidates[0]):
        candidates = np.concatenate([np.zeros_like(candidates[:1]), candidates])
    onehot = np.eye(K)[y]  # (n, K)
    mse = np.zeros(len(candidates))
    tv = np.zeros(len(candidates))
    for i, eps in enumerate(candidates):
        q = proxy_teacher(p, eps).numpy()  # (n, K)
        mse[i] = float(((q - onehot) ** 2).sum(1).mean())
        tv[i] = float(0.5 * np.abs(q - onehot).sum(1).mean())
    best = int(np.argmin(mse))  # ties keep the lowest index: ε = 0 wins a tie
    return Selection(eps=candidates[best], index=best, candidates=candidates, mse=mse, tv=tv)
