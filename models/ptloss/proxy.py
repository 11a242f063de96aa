"""The proxy teacher: the distribution PTLoss distills from.

Minimizing Σ_k p_t,k · f_k(q_k) over the simplex, f_k(q) = −log q + Σ_m ε_{k,m} (1 − q)^m, gives the
Lagrange conditions p_t,k · f'_k(q_k) = λ, Σ_k q_k = 1. When every f_k is decreasing and convex on
(0, 1] (``is_valid_eps``), g_k(q) = p_t,k · f'_k(q) increases in q, so each q_k(λ) is found by
bisection on q and Σ_k q_k(λ) increases in λ, so λ is found by an outer bisection. Everything is
vectorized over a batch (B, K); at ε = 0 the solution is q = p_t (λ = −1).
"""

from __future__ import annotations

import numpy as np
import torch

_GRID = torch.linspace(1e-4, 1.0, 2000, dtype=torch.float64)  # (G,) where validity is checked


def _fprime(q: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """f'_k(q) for q (..., K) and eps (K, M): −1/q − Σ_m m ε_{k,m} (1 − q)^(m−1), by Horner in
    r = 1 − q (the bisection calls this thousands of times; no pow)."""
    M = eps.shape[1]
    coef = eps * torch.arange(1, M + 1, dtype=eps.dtype)  # (K, M) m · ε_{k,m}
    r = 1.0 - q
    acc = coef[:, M - 1].expand_as(q)
    for j in range(M - 2, -1, -1):
        acc = acc * r + coef[:, j]
    return -1.0 / q - acc


def _fsecond(q: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """f''_k(q): 1/q² + Σ_m m (m−1) ε_{k,m} (1 − q)^(m−2) (the m = 1 term vanishes)."""
    M = eps.shape[1]
    m = torch.arange(1, M + 1, dtype=q.dtype)  # (M,)
    powers = (1.0 - q).unsqueeze(-1) ** (m - 2).clamp_min(0)  # (..., K, M)
    return 1.0 / q**2 + (powers * (m * (m - 1) * eps)).sum(-1)


def is_valid_eps(eps: np.ndarray | torch.Tensor) -> bool:
    """True when every f_k is decreasing and strictly convex on (0, 1] (checked on a fine grid):
    then the proxy teacher exists, is unique and is the minimizer of L_PT over the simplex."""
    e = torch.as_tensor(np.asarray(eps), dtype=torch.float64)
    if e.ndim != 2 or not torch.isfinite(e).all():
        return False
    q = _GRID.unsqueeze(-1).expand(-1, e.shape[0])  # (G, K)
    return bool((_fprime(q, e) < 0).all() and (_fsecond(q, e) > 0).all())


def check_eps(eps: np.ndarray | torch.Tensor, n_classes: int) -> torch.Tensor:
    """eps as a float64 (K, M) tensor, or ValueError saying what is wrong."""
    e = torch.as_tensor(np.asarray(eps), dtype=torch.float64)
    if e.ndim != 2 or e.shape[0] != n_classes or e.shape[1] < 1:
        raise ValueError(f"eps must have shape (K={n_classes}, M>=1), got {tuple(e.shape)}")
    if not is_valid_eps(e):
        raise ValueError("eps makes some f_k non-convex or increasing on (0, 1]: no proxy teacher")
    return e


def _solve_q(p: torch.Tensor, eps: torch.Tensor, lam: torch.Tensor, iters: int) -> torch.Tensor:
    """q (B, K) with p_k f'_k(q_k) = λ (B,), by bisection on q in (0, 1]; q = 1 where even
    q = 1 gives g_k(1) ≤ λ. Classes with p_k = 0 have g_k ≡ 0 > λ and go to q = 0."""
    lo = torch.zeros_like(p)
    hi = torch.ones_like(p)
    target = lam.unsqueeze(-1)  # (B, 1)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        above = p * _fprime(mid, eps) > target  # (B, K) g(mid) > λ: the root is below mid
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    q = 0.5 * (lo + hi)
    at_one = p * _fprime(torch.ones_like(p), eps) <= target
    return torch.where(at_one, torch.ones_like(q), q)


def proxy_teacher(
    teacher: np.ndarray | torch.Tensor,
    eps: np.ndarray | torch.Tensor,
    iters: int = 60,
    inner_iters: int = 55,
) -> torch.Tensor:
    """The proxy teacher (B, K) float64 for teacher probabilities (B, K) and ε (K, M).

    Outer bisection on λ between min_k g_k(1/K) (every q_k ≤ 1/K, Σ ≤ 1) and max_k g_k(1)
    (some q_k = 1, Σ ≥ 1); inner bisection on each q_k. The result is renormalized (the bisection
    leaves Σ within ~1e-12 of 1).
    """
    p = torch.as_tensor(np.asarray(teacher), dtype=torch.float64)
    if p.ndim != 2:
        raise ValueError(f"teacher must be (B, K), got shape {tuple(p.shape)}")
    B, K = p.shape
    e = check_eps(eps, K)
    if (p < 0).any() or not torch.allclose(p.sum(-1), torch.ones(B, dtype=p.dtype), atol=1e-6):
        raise ValueError("teacher rows must be probability distributions")
    if B == 0:
        return p.clone()
    if not e.any():
        return p / p.sum(-1, keepdim=True)
    g_one = p * _fprime(torch.ones_like(p), e)  # (B, K) g_k(1)
    g_low = p * _fprime(torch.full_like(p, 1.0 / K), e)  # (B, K) g_k(1/K)
    lam_hi = g_one.max(-1).values  # (B,)
    lam_lo = torch.where(p > 0, g_low, torch.zeros_like(g_low)).min(-1).values  # (B,)
    for _ in range(iters):
        lam = 0.5 * (lam_lo + lam_hi)
        total = _solve_q(p, e, lam, inner_iters).sum(-1)  # (B,)
        too_much = total > 1.0
        lam_hi = torch.where(too_much, lam, lam_hi)
        lam_lo = torch.where(too_much, lam_lo, lam)
    q = _solve_q(p, e, 0.5 * (lam_lo + lam_hi), inner_iters)
    return q / q.sum(-1, keepdim=True)
