"""Activation-aware (whitened) truncated SVD of each layer's key and value projections.

For a projection y = x·M (M = W.T: d × o) and calibration inputs X (n × d) with second moment
C = XᵀX / n, the rank-r factorization minimizing E‖x·M − x·A·B‖² is read off the SVD of C^½·M:

    C^½·M = U Σ Vᵀ,    A = C^-½ U_r  (d × r),    B = Σ_r V_rᵀ  (r × o)

so the latents c = x·A are white (unit variance per channel on the calibration set: uniform
quantization error) and the squared error of keeping r channels is Σ_{i>r} σ_i². At r = o the
product A·B is M again. ``whiten=False`` uses C = I (plain SVD: the ablation).

``LayerFactors`` keeps the full-rank factors of one layer; a rank schedule truncates them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

__all__ = ["LayerFactors", "MatrixFactors", "attention_layers", "calibrate", "factorize"]

Progress = Callable[[float, str], None]


@dataclass
class MatrixFactors:
    """Full-rank whitened factors of one projection: M ≈ A[:, :r] @ B[:r]."""

    A: torch.Tensor  # (d, o) float32: latent down-projection, columns by importance
    B: torch.Tensor  # (o, o) float32: rows Σ_i v_iᵀ
    sigma: torch.Tensor  # (o,) float32 singular values of C^½·M, descending
    cond: float  # condition number of the plain weight M (σ_max / σ_min), for progressive ranks

    @property
    def full_rank(self) -> int:
        return self.B.shape[0]

    def energy(self) -> torch.Tensor:
        """(o,) share of the whitened output energy each latent channel carries (sums to 1)."""
        e = self.sigma.double() ** 2
        return (e / e.sum().clamp(min=1e-300)).float()

    def truncated(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(A_r (d, r), B_r (r, o))."""
        return self.A[:, :rank], self.B[:rank]


@dataclass
class LayerFactors:
    """Key and value factors of one attention layer."""

    k: MatrixFactors
    v: MatrixFactors


def attention_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder layers' ``self_attn`` modules (Llama, Qwen2, Mistral: ``model.model.layers``)."""
    base = getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    if layers is None or not all(hasattr(layer, "self_attn") for layer in layers):
        raise TypeError(
            f"{type(model).__name__}: no decoder layers with self_attn (not Llama-like)"
        )
    return [layer.self_attn for layer in layers]


@torch.no_grad()
def calibrate(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    progress: Progress | None = None,
) -> list[torch.Tensor]:
    """Second moment C = XᵀX / n (d, d) float64 of every layer's attention input over the real
    (unmasked) tokens of ``batches`` of (input ids (B, T), attention mask (B, T))."""
    attns = attention_layers(model)
    d = attns[0].k_proj.in_features
    sums = [torch.zeros(d, d, dtype=torch.float64) for _ in attns]
    count = [0]
    keep: list[torch.Tensor] = []  # (B, T) bool mask of the batch running now

    def hook(i: int):
        def fn(module, args):
            x = args[0].detach()  # (B, T, d)
            x = x[keep[0]].double().cpu()  # (N, d) real tokens
            sums[i].addmm_(x.T, x)
            if i == 0:
                count[0] += x.shape[0]

        return fn

    handles = [a.k_proj.register_forward_pre_hook(hook(i)) for i, a in enumerate(attns)]
    try:
        device = next(model.parameters()).device
        for step, (ids, mask) in enumerate(batches):
            keep[:] = [mask.bool().to(device)]
            model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            if progress:
                progress(0.0, f"calibration batch {step + 1}")
    finally:
        for h in handles:
            h.remove()
    if count[0] == 0:
        raise ValueError("calibration saw no tokens")
    return [s / count[0] for s in sums]


def _factor(weight: torch.Tensor, cov: torch.Tensor | None, damp: float) -> MatrixFactors:
    """Whitened SVD of M = weight.T (d × o); cov (d, d) float64 or None (plain SVD)."""
    M = weight.detach().double().cpu().T  # (d, o)
    plain_sigma = torch.linalg.svdvals(M)
    cond = float(plain_sigma[0] / plain_sigma[-1].clamp(min=1e-30))
    if cov is None:
        U, S, Vh = torch.linalg.svd(M, full_matrices=False)  # (d, o), (o,), (o, o)
        A = U
    else:
        C = cov.double()
        C = C + damp * C.diagonal().mean() * torch.eye(C.shape[0], dtype=C.dtype)
        evals, evecs = torch.linalg.eigh(C)  # C = Q diag(λ) Qᵀ
        evals = evals.clamp(min=evals.max() * 1e-12)
        half = (evecs * evals.sqrt()) @ evecs.T  # C^½ (d, d)
        inv_half = (evecs * evals.rsqrt()) @ evecs.T  # C^-½ (d, d)
        U, S, Vh = torch.linalg.svd(half @ M, full_matrices=False)
        A = inv_half @ U  # (d, o)
    B = S[:, None] * Vh  # (o, o)
    return MatrixFactors(A.float(), B.float(), S.float(), cond)


@torch.no_grad()
def factorize(
    model: torch.nn.Module,
    covariances: list[torch.Tensor] | None,
    damp: float = 1e-4,
    progress: Progress | None = None,
) -> list[LayerFactors]:
    """Full-rank factors of every layer's W_k and W_v (whitened by ``covariances`` from
    ``calibrate``; None: plain SVD)."""
    out = []
    attns = attention_layers(model)
    for i, attn in enumerate(attns):
        cov = covariances[i] if covariances is not None else None
        out.append(
            LayerFactors(
                k=_factor(attn.k_proj.weight, cov, damp), v=_factor(attn.v_proj.weight, cov, damp)
            )
        )
        if progress:
            progress((i + 1) / len(attns), f"factorized layer {i + 1}/{len(attns)}")
    return out
