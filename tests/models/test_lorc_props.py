"""Property tests of LoRC's pure parts: exact factors at full rank, exact budget fits, codecs."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.lorc import (
    KVLayout,
    LayerFactors,
    QuantSpec,
    Schedule,
    dequantize,
    greedy,
    progressive,
    quantize,
    uniform,
)
from models.lorc.factorize import _factor


@settings(max_examples=25, deadline=None)
@given(
    d=st.integers(4, 24),
    o=st.integers(1, 12),
    n=st.integers(1, 64),
    seed=st.integers(0, 10_000),
    whiten=st.booleans(),
)
def test_full_rank_factors_rebuild_the_weight_exactly(d, o, n, seed, whiten):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(o, d, generator=g)  # nn.Linear weight (out, in)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    cov = X.T @ X / n if whiten else None  # rank-deficient when n < d: damping keeps it exact
    f = _factor(W, cov, damp=1e-4)
    r = min(d, o)
    A, B = f.truncated(r)
    assert torch.allclose((A.double() @ B.double()).T, W.double(), atol=1e-4, rtol=1e-4)
    assert torch.all(f.sigma[:-1] >= f.sigma[1:] - 1e-6)  # importance order


@settings(max_examples=25, deadline=None)
@given(d=st.integers(8, 24), o=st.integers(2, 12), r=st.integers(1, 12), seed=st.integers(0, 999))
def test_whitened_truncation_error_is_the_dropped_energy(d, o, r, seed):
    r = min(r, o)
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(o, d, generator=g, dtype=torch.float64)
    X = torch.randn(4 * d, d, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, d)
    cov = X.T @ X / X.shape[0]
    f = _factor(W, cov, damp=0.0)
    A, B = f.truncated(r)
    err = ((X @ W.T - X @ (A.double() @ B.double())) ** 2).sum() / X.shape[0]
    dropped = (f.sigma[r:].double() ** 2).sum()
    assert torch.isclose(err, dropped, rtol=1e-3, atol=1e-4)


def _factors(n_layers: int, kv_dim: int, seed: int) -> list[LayerFactors]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_layers):
        mats = []
        for _kind in "kv":
            W = torch.randn(kv_dim, 2 * kv_dim, generator=g) * torch.rand(kv_dim, 1, generator=g)
            mats.append(_factor(W, None, 0.0))
        out.append(LayerFactors(*mats))
    return out


@settings(max_examples=40, deadline=None)
@given(
    n_layers=st.integers(1, 5),
    units=st.integers(2, 6),
    bits=st.sampled_from([None, 8, 4]),
    frac=st.floats(0.05, 1.2),
    seed=st.integers(0, 999),
)
def test_every_schedule_fits_its_budget_and_greedy_is_maximal(n_layers, units, bits, frac, seed):
    unit = 4
    layout = KVLayout(n_layers, units * unit, 2, QuantSpec(bits, group=8))
    factors = _factors(n_layers, layout.kv_dim, seed)
    budget = frac * layout.full_bytes
    smallest = layout.bytes_per_token(Schedule([unit] * n_layers, [unit] * n_layers))
    if budget < smallest:
        return
    for s in (
        uniform(layout, budget, unit),
        progressive(layout, factors, budget, unit),
        greedy(layout, factors, budget, unit),
    ):
        assert layout.bytes_per_token(s) <= budget
    s = greedy(layout, factors, budget, unit)
    used = layout.bytes_per_token(s)
    for ranks in (s.ranks_k, s.ranks_v):  # no matrix can take one more unit
        for r in ranks:
            if r < layout.kv_dim:
                grow = layout.matrix_bytes(min(r + unit, layout.kv_dim)) - layout.matrix_bytes(r)
                assert used + grow > budget


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 20)),
    bits=st.sampled_from([8, 4]),
    group=st.sampled_from([2, 4, 8, 32]),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 999),
)
def test_quantization_error_is_within_half_a_step(shape, bits, group, scale, seed):
    b, t, half = shape
    x = torch.randn(b, t, 2 * half, generator=torch.Generator().manual_seed(seed)) * scale
    spec = QuantSpec(bits, group)
    q = quantize(x, spec)
    y = dequantize(q, group, torch.float32)
    qmax = 127 if bits == 8 else 7
    step = q.scales.float().repeat_interleave(group, dim=-1)[..., : x.shape[-1]]
    assert torch.all((x - y).abs() <= step / 2 + 1e-6 * scale)
    assert q.nbytes == b * t * spec.bytes_per_token(2 * half, 2)
    assert torch.all(y.abs() <= qmax * step + 1e-6 * scale)
    # one token at a time gives the same codes as all at once (a cache can append)
    parts = torch.cat([quantize(x[:, i : i + 1], spec).codes for i in range(t)], dim=1)
    assert torch.equal(parts, q.codes)


@settings(max_examples=30, deadline=None)
@given(ceiling=st.floats(1.0, 3.0), steps=st.integers(4, 10))
def test_perplexity_fit_keeps_the_ceiling_and_brackets_the_smallest_budget(ceiling, steps):
    from models.lorc import BudgetError, fit_to_perplexity

    layout = KVLayout(4, 64, 2, QuantSpec(8, group=8))
    factors = _factors(4, 64, 0)

    def ppl(s: Schedule) -> float:  # falls as bytes grow, like the real curve
        return 1.0 + 4.0 * (1 - layout.bytes_per_token(s) / layout.full_bytes) ** 2

    lo, hi = 0.1 * layout.full_bytes, 0.6 * layout.full_bytes
    try:
        best, value, tried = fit_to_perplexity(
            lambda b: greedy(layout, factors, b, 8), ppl, ceiling, lo, hi, steps
        )
    except BudgetError:
        assert ppl(greedy(layout, factors, hi, 8)) > ceiling
        return
    assert value <= ceiling and value == ppl(best)
    failing = [b for b, p in tried if p > ceiling]
    assert all(b < layout.bytes_per_token(best) for b in failing)  # smaller budgets broke it
