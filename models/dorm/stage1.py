"""Stage 1: quality-aware initial weights from a bootstrap ensemble of reward models.

Each of K members trains on a bootstrap sample of the pairs and scores the pairs it did not see
(out-of-bag), so a mislabeled pair cannot be memorised by the member that judges it. Per pair:
- ``p_mean`` (P,): mean over members of σ(margin), the probability that ``chosen`` is better;
- ``uncertainty`` (P,): entropy of ``p_mean`` in bits, 0 (sure) .. 1 (a coin flip);
- ``disagreement`` (P,): share of members that prefer ``rejected``;
- ``weight`` (P,) = (1 − disagreement) · (1 − uncertainty / 2), clipped to [w_min, 1]: a pair the
  ensemble calls mislabeled starts near ``w_min``, an uninformative one near the middle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.dorm.reward import PairData, RewardConfig, build_reward_model, fit, pair_margins

__all__ = ["Stage1Result", "stage1_weights", "initial_weights", "W_MIN"]

W_MIN = 0.02
Progress = Callable[[float, str], None]


@dataclass
class Stage1Result:
    p_mean: np.ndarray  # (P,)
    uncertainty: np.ndarray  # (P,) bits in [0, 1]
    disagreement: np.ndarray  # (P,) in [0, 1]
    margin: np.ndarray  # (P,) logit of p_mean (the ensemble's out-of-bag margin)
    weight: np.ndarray  # (P,) in [W_MIN, 1]


def initial_weights(p: np.ndarray, w_min: float = W_MIN) -> Stage1Result:
    """Stage-1 quantities from member probabilities ``p`` (K, P) (NaN = member did not score)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    seen = ~np.isnan(p)
    count = np.maximum(seen.sum(0), 1)
    p_mean = np.where(seen, p, 0.0).sum(0) / count
    p_mean = np.where(seen.any(0), p_mean, 0.5)
    pm = np.clip(p_mean, 1e-6, 1 - 1e-6)
    unc = -(pm * np.log2(pm) + (1 - pm) * np.log2(1 - pm))
    dis = np.where(seen, p < 0.5, False).sum(0) / count
    dis = np.where(seen.any(0), dis, 0.5)
    logit = np.log(pm) - np.log1p(-pm)
    w = np.clip((1 - dis) * (1 - unc / 2), w_min, 1.0)
    return Stage1Result(p_mean, unc, dis, logit, w)


def stage1_weights(
    data: PairData,
    rows: np.ndarray,
    config: RewardConfig,
    *,
    n_members: int = 5,
    seed: int = 0,
    encoder: str | None = None,
    n_top: int = 1,
    progress: Progress | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> Stage1Result:
    """Out-of-bag bootstrap-ensemble weights for the pairs ``rows`` (P,) of ``data``."""
    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    rng = np.random.default_rng(seed)
    probs = np.full((n_members, n), np.nan)
    dim = data.texts.pooled.shape[1]
    for k in range(n_members):
        boot = rng.integers(0, n, size=n)
        oob = np.setdiff1d(np.arange(n), boot)
        cfg = RewardConfig(**{**config.__dict__, "seed": seed * 1000 + k})
        model = build_reward_model(cfg, dim, encoder, n_top)

        def member_progress(f: float, msg: str, k: int = k) -> None:
            if progress:
                progress((k + f) / n_members, f"stage 1: member {k + 1}/{n_members}, {msg}")

        fit(
            model,
            data,
            cfg,
            rows=rows[boot],
            progress=member_progress,
            check_cancelled=check_cancelled,
        )
        score = oob if len(oob) else np.arange(n)
        probs[k, score] = torch.sigmoid(pair_margins(model, data, rows[score])).numpy()
    return initial_weights(probs)
