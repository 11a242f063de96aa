"""Stage 2: bilevel refinement of pair weights against a small clean validation set V.

Weights w_i = w_min + (1 − w_min)·σ(b_i + g_i(λ)) (P,), where b_i is the logit of the stage-1
weight, so λ = 0 reproduces stage 1, and g has few degrees of freedom by default:
- ``"features"``: g_i = z_i·a + c, z_i (F,) standardized per-pair features (stage-1 uncertainty,
  disagreement, margin, log lengths); F + 1 parameters;
- ``"source"``: g_i = λ[source_i], one parameter per source or cluster;
- ``"free"``: g_i = λ_i, one parameter per pair (overfits a small V: reported, not the default).

Inner problem θ*(λ) = argmin_θ L_w(θ, λ) = mean_i w_i ℓ_i(θ); outer problem min_λ L_V(θ*(λ)).

``method="penalty"`` (default) — the first-order penalty method: min over θ and λ, max over an
auxiliary copy u, of L_V(θ) + α·[L_w(θ, λ) − L_w(u, λ)] with α growing. θ descends
L_V/α + L_w, u descends L_w, and λ descends α·mean_i w_i(λ)·(ℓ_i(θ) − ℓ_i(u)) with the losses held
fixed (``penalty_lambda_loss``): as α → ∞ its gradient tends to the implicit-function hypergradient
−Σ_i ∂w_i/∂λ ∇ℓ_i(θ*)ᵀ H⁻¹ ∇L_V(θ*) (checked in tests/models/test_dorm_bilevel.py).

``method="lookahead"`` — one-step look-ahead: λ descends L_V(θ − η ∇_θ L_w(θ, λ)) (a second-order
term through one SGD step), θ descends L_w.

V is split into a fitting part (in L_V) and a held-out part for early stopping: every
``eval_every`` iterations a reward model is trained afresh on the current weights (``eval_refit``;
else the auxiliary model u, trained on weighted data only, is judged), and the weights kept are
those that beat the best so far on held-out accuracy significantly (one-sided McNemar test on the
held-out pairs, ``min_z``). Evaluation 0 is stage 1 itself, so stage 2 returns the stage-1
weights exactly when refining never helps on held-out validation data.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from models.dorm.reward import (
    PairData,
    RewardConfig,
    RewardModel,
    build_reward_model,
    fit,
    make_optimizer,
    pair_losses,
    pair_margins,
)
from models.dorm.stage1 import W_MIN, Stage1Result

__all__ = [
    "PairWeights",
    "RefineConfig",
    "RefineResult",
    "pair_features",
    "penalty_lambda_loss",
    "refine_weights",
    "WEIGHT_MODES",
]

WEIGHT_MODES = ("features", "source", "free")
FEATURE_NAMES = ("uncertainty", "disagreement", "margin", "log_len_chosen", "log_len_rejected")
Progress = Callable[[float, str], None]


def pair_features(
    stage1: Stage1Result, chosen_len: np.ndarray, rejected_len: np.ndarray
) -> np.ndarray:
    """Standardized per-pair features (P, 5): uncertainty, disagreement, margin, log lengths."""
    z = np.stack(
        [
            stage1.uncertainty,
            stage1.disagreement,
            np.clip(stage1.margin, -10, 10),
            np.log1p(np.asarray(chosen_len, dtype=np.float64)),
            np.log1p(np.asarray(rejected_len, dtype=np.float64)),
        ],
        axis=1,
    )
    sd = z.std(0)
    return ((z - z.mean(0)) / np.where(sd > 1e-9, sd, 1.0)).astype(np.float32)


class PairWeights(nn.Module):
    """w (P,) in [w_min, 1] from stage-1 weights ``base`` (P,) and a few parameters λ."""

    def __init__(
        self,
        base: np.ndarray,
        mode: str = "features",
        features: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        w_min: float = W_MIN,
    ) -> None:
        super().__init__()
        if mode not in WEIGHT_MODES:
            raise ValueError(f"unknown weight mode {mode!r} (one of {', '.join(WEIGHT_MODES)})")
        self.mode = mode
        self.w_min = float(w_min)
        b = np.clip((np.asarray(base, dtype=np.float64) - w_min) / (1 - w_min), 1e-4, 1 - 1e-4)
        self.register_buffer("base", torch.as_tensor(np.log(b) - np.log1p(-b), dtype=torch.float32))
        p = len(b)
        if mode == "features":
            z = np.zeros((p, 0), np.float32) if features is None else features
            self.register_buffer("z", torch.as_tensor(z, dtype=torch.float32))
            self.a = nn.Parameter(torch.zeros(self.z.shape[1]))
            self.c = nn.Parameter(torch.zeros(()))
        elif mode == "source":
            g = np.zeros(p, np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
            self.register_buffer("groups", torch.as_tensor(g))
            self.lam = nn.Parameter(torch.zeros(int(g.max()) + 1 if p else 1))
        else:
            self.lam = nn.Parameter(torch.zeros(p))

    @property
    def degrees_of_freedom(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self) -> torch.Tensor:
        if self.mode == "features":
            g = self.z @ self.a + self.c
        elif self.mode == "source":
            g = self.lam[self.groups]
        else:
            g = self.lam
        # clamp the logit so weights stay finite and strictly inside (w_min, 1] numerically
        return self.w_min + (1 - self.w_min) * torch.sigmoid((self.base + g).clamp(-30, 30))

    def weights(self) -> np.ndarray:
        with torch.no_grad():
            return self().double().numpy()


def penalty_lambda_loss(
    w: torch.Tensor, loss_theta: torch.Tensor, loss_u: torch.Tensor, alpha: float
) -> torch.Tensor:
    """α · mean_i w_i (ℓ_i(θ) − ℓ_i(u)) with the losses held fixed: its gradient in λ (through w)
    is the penalty method's hypergradient estimate."""
    return alpha * (w * (loss_theta.detach() - loss_u.detach())).mean()


@dataclass
class RefineConfig:
    method: str = "penalty"  # "penalty" or "lookahead"
    weights: str = "features"  # one of WEIGHT_MODES
    iterations: int = 40
    inner_steps: int = 5  # θ/u mini-batch steps per λ step
    alpha0: float = 1.0
    alpha_growth: float = 1.1  # α multiplies by this each iteration ...
    alpha_max: float = 100.0  # ... up to this
    lam_lr: float = 0.05
    lookahead_lr: float = 0.5  # η of the look-ahead SGD step
    es_fraction: float = 0.4  # share of V held out for early stopping
    eval_every: int = 5
    patience: int = 4  # evaluations without held-out improvement before stopping
    eval_refit: bool = True  # judge weights by a model trained afresh on them (else: by u)
    min_z: float = 1.645  # one-sided McNemar z a refinement must reach to replace the best
    seed: int = 0


@dataclass
class RefineResult:
    weight: np.ndarray  # (P,) final weights in [w_min, 1]
    best_iteration: int
    curve: list[dict] = field(default_factory=list)  # per evaluation: iteration, accuracies, loss
    degrees_of_freedom: int = 0


def _val_loss(model: RewardModel, data: PairData, rows: np.ndarray) -> tuple[float, float]:
    m = pair_margins(model, data, rows)
    return float(F.softplus(-m).mean()), float((m > 0).float().mean())


def _functional_losses(model: RewardModel, params: dict, data: PairData, rows: np.ndarray):
    both = np.concatenate([data.chosen_idx[rows], data.rejected_idx[rows]])
    r = functional_call(model, params, (data, both))
    return F.softplus(-(r[: len(rows)] - r[len(rows) :]))


def refine_weights(
    data: PairData,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    stage1: Stage1Result,
    reward: RewardConfig,
    config: RefineConfig,
    *,
    features: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    encoder: str | None = None,
    n_top: int = 1,
    progress: Progress | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> RefineResult:
    """Stage-2 weights for ``train_rows`` (P,) against the clean pairs ``val_rows`` of ``data``."""
    rng = np.random.default_rng(config.seed)
    train_rows = np.asarray(train_rows, dtype=np.int64)
    val_rows = rng.permutation(np.asarray(val_rows, dtype=np.int64))
    n_es = max(1, int(round(len(val_rows) * config.es_fraction)))
    es_rows, fit_rows = val_rows[:n_es], val_rows[n_es:]
    if len(fit_rows) == 0:
        fit_rows = es_rows
    weights = PairWeights(stage1.weight, config.weights, features, groups)
    lam_opt = torch.optim.Adam(weights.parameters(), lr=config.lam_lr)
    dim = data.texts.pooled.shape[1]

    # warm start: a reward model trained on the stage-1 weighted data (θ and u start there)
    u = build_reward_model(reward, dim, encoder, n_top)

    def warm_progress(f: float, msg: str) -> None:
        if progress:
            progress(0.3 * f, f"stage 2 warm start: {msg}")

    fit(
        u,
        data,
        reward,
        rows=train_rows,
        weights=stage1.weight,
        progress=warm_progress,
        check_cancelled=check_cancelled,
    )
    theta = copy.deepcopy(u)
    if config.method == "lookahead":
        u = theta  # the look-ahead keeps one model: evaluate that one
    u.train()
    theta.train()
    u_opt, th_opt = make_optimizer(u, reward), make_optimizer(theta, reward)

    curve: list[dict] = []
    best: tuple = (None, -1, weights.weights())
    bad = 0

    def evaluate(it: int, alpha: float) -> bool:
        nonlocal best, bad
        judge = u
        if config.eval_refit:  # what the weights are for: a reward model trained on them
            judge = build_reward_model(reward, dim, encoder, n_top)
            fit(judge, data, reward, rows=train_rows, weights=weights.weights())
        m_es = pair_margins(judge, data, es_rows)
        correct = (m_es > 0).numpy()
        loss_es, acc_es = float(F.softplus(-m_es).mean()), float(correct.mean())
        _, acc_fit = _val_loss(judge, data, fit_rows)
        u.train()
        curve.append(
            {
                "iteration": it,
                "alpha": alpha,
                "val_fit_accuracy": acc_fit,
                "val_heldout_accuracy": acc_es,
                "val_heldout_loss": loss_es,
            }
        )
        # held-out accuracy decides (log-loss rewards under-confident models on noisy pairs), and
        # a change must beat the best so far significantly: one-sided McNemar test on the held-out
        # pairs the two models judge differently (b won, c lost), b − c ≥ z·√(b + c)
        if best[1] < 0:
            best, bad = (correct, 0, weights.weights()), 0
        else:
            won = int((correct & ~best[0]).sum())
            lost = int((~correct & best[0]).sum())
            if won > lost and won - lost >= config.min_z * math.sqrt(won + lost):
                best, bad = (correct, it, weights.weights()), 0
            else:
                bad += 1
        return bad >= config.patience

    evaluate(0, config.alpha0)
    bs = reward.batch_size
    for it in range(1, config.iterations + 1):
        alpha = min(config.alpha0 * config.alpha_growth ** (it - 1), config.alpha_max)
        lam_opt.zero_grad()
        for _ in range(config.inner_steps):
            b = rng.choice(len(train_rows), size=min(bs, len(train_rows)), replace=False)
            vb = rng.choice(fit_rows, size=min(bs, len(fit_rows)), replace=False)
            rows = train_rows[b]
            w = weights()
            if config.method == "penalty":
                lu = pair_losses(u, data, rows)
                lt = pair_losses(theta, data, rows)
                lv = pair_losses(theta, data, vb).mean()
                u_opt.zero_grad()
                (w[b].detach() * lu).mean().backward()
                u_opt.step()
                th_opt.zero_grad()
                (lv / alpha + (w[b].detach() * lt).mean()).backward()
                th_opt.step()
                (penalty_lambda_loss(w[b], lt, lu, alpha) / config.inner_steps).backward()
            elif config.method == "lookahead":
                params = dict(theta.named_parameters())
                lt = _functional_losses(theta, params, data, rows)
                grads = torch.autograd.grad(
                    (w[b] * lt).mean(), list(params.values()), create_graph=True
                )
                ahead = {k: p - config.lookahead_lr * g for (k, p), g in zip(params.items(), grads)}
                lv = _functional_losses(theta, ahead, data, vb).mean()
                (lv / config.inner_steps).backward(inputs=list(weights.parameters()))
                th_opt.zero_grad()
                (w[b].detach() * pair_losses(theta, data, rows)).mean().backward()
                th_opt.step()
            else:
                raise ValueError(f"unknown method {config.method!r} (use 'penalty' or 'lookahead')")
        lam_opt.step()
        if check_cancelled:
            check_cancelled()
        if progress:
            progress(0.3 + 0.7 * it / config.iterations, f"stage 2: iteration {it}")
        if it % config.eval_every == 0 and evaluate(it, alpha):
            break
    # nothing beat stage 1 on held-out validation data: return stage 1 exactly
    weight = np.asarray(stage1.weight, dtype=np.float64) if best[1] == 0 else best[2]
    return RefineResult(weight, best[1], curve, weights.degrees_of_freedom)
