"""Distillation losses on student logits (B, K) against teacher probabilities (B, K).

Writing −log p = Σ_{m≥1} (1−p)^m / m, PTLoss perturbs the leading M terms class by class:

    L_PT = mean_b Σ_k p_t,k · [ −log p_s,k + Σ_{m=1..M} ε_{k,m} · (1 − p_s,k)^m ]

with ε of shape (K, M). At ε = 0 it is the soft cross-entropy against the teacher, which has the
gradients of KD (KL(p_t ‖ p_s) differs from it by the teacher's entropy, a constant).
Temperature T: p_s = softmax(z / T), p_t is expected already tempered (``temper``), and every
soft loss is scaled by T² (Hinton et al.) so gradient sizes do not shrink with T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES: tuple[str, ...] = ("ce", "kd", "ls", "ptloss")
"""Loss names: hard-label cross-entropy, KD, label smoothing, PTLoss."""


def temper(probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Teacher probabilities (B, K) at temperature T: p^(1/T), renormalized (softmax(z / T))."""
    if temperature == 1.0:
        return probs
    logp = torch.log(probs.clamp_min(1e-30)) / temperature  # (B, K)
    return torch.softmax(logp, dim=-1)


def hard_ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits (B, K) against hard labels (B,)."""
    return F.cross_entropy(logits, labels)


def label_smoothing_loss(
    logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.1
) -> torch.Tensor:
    """Cross-entropy against hard labels (B,) smoothed towards uniform by ``smoothing``."""
    return F.cross_entropy(logits, labels, label_smoothing=smoothing)


def kd_loss(logits: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KD: T² · mean_b Σ_k p_t,k · (−log softmax(z / T)_k), teacher (B, K) already tempered."""
    logp = torch.log_softmax(logits / temperature, dim=-1)  # (B, K)
    return -(teacher * logp).sum(-1).mean() * temperature**2


def ptloss(
    logits: torch.Tensor,
    teacher: torch.Tensor,
    eps: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """L_PT of logits (B, K) against teacher (B, K) with coefficients eps (K, M), any order M."""
    K = logits.shape[-1]
    if eps.ndim != 2 or eps.shape[0] != K:
        raise ValueError(f"eps must have shape (K={K}, M), got {tuple(eps.shape)}")
    logp = torch.log_softmax(logits / temperature, dim=-1)  # (B, K)
    q = 1.0 - logp.exp()  # (B, K) 1 − p_s
    M = eps.shape[1]
    orders = torch.arange(1, M + 1, device=logits.device, dtype=logp.dtype)  # (M,)
    powers = q.unsqueeze(-1) ** orders  # (B, K, M)
    perturb = (powers * eps.to(logp)).sum(-1)  # (B, K)
    return (teacher * (perturb - logp)).sum(-1).mean() * temperature**2


def distill_loss(
    name: str,
    logits: torch.Tensor,
    *,
    teacher: torch.Tensor,
    hard: torch.Tensor,
    eps: torch.Tensor | None = None,
    temperature: float = 1.0,
    smoothing: float = 0.1,
) -> torch.Tensor:
    """The loss called ``name`` (one of ``LOSSES``) for logits (B, K): soft targets teacher (B, K),
    hard targets hard (B,), ε (K, M) for PTLoss."""
    if name == "ce":
        return hard_ce_loss(logits, hard)
    if name == "ls":
        return label_smoothing_loss(logits, hard, smoothing)
    if name == "kd":
        return kd_loss(logits, teacher, temperature)
    if name == "ptloss":
        if eps is None:
            raise ValueError("ptloss needs eps (K, M)")
        return ptloss(logits, teacher, eps, temperature)
    raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
