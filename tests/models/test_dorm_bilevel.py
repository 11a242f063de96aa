"""DORM stage 2: the penalty method's hypergradient against the exact implicit-function answer,
and weights that stay finite and in range whatever the parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.dorm.bilevel import PairWeights, penalty_lambda_loss
from models.dorm.stage1 import W_MIN, initial_weights

MU = 0.1  # L2 strength of the inner problem (makes it strongly convex)


def _problem(seed: int = 0, n: int = 40, d: int = 4, n_val: int = 25):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    true = torch.randn(d, generator=g, dtype=torch.float64)
    y = torch.sign(x @ true + 0.5 * torch.randn(n, generator=g, dtype=torch.float64))
    y[:8] = -y[:8]  # some flipped labels for the weights to care about
    xv = torch.randn(n_val, d, generator=g, dtype=torch.float64)
    yv = torch.sign(xv @ true)
    feats = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
    base = np.random.default_rng(seed + 1).uniform(0.1, 0.9, size=n)
    weights = PairWeights(base, "features", features=feats).double()
    with torch.no_grad():  # a point away from λ = 0 so every parameter matters
        weights.a.copy_(torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64))
        weights.c.fill_(0.1)
    return x, y, xv, yv, weights


def _losses(theta, x, y):
    return torch.nn.functional.softplus(-y * (x @ theta))  # (n,)


def _inner(theta, w, x, y):
    return (w * _losses(theta, x, y)).mean() + 0.5 * MU * theta @ theta


def _newton(fn, d: int) -> torch.Tensor:
    theta = torch.zeros(d, dtype=torch.float64)
    for _ in range(50):
        g = torch.autograd.functional.jacobian(fn, theta)
        h = torch.autograd.functional.hessian(fn, theta)
        step = torch.linalg.solve(h, g)
        theta = theta - step
        if step.abs().max() < 1e-13:
            break
    return theta


def _exact_hypergradient(x, y, xv, yv, weights) -> torch.Tensor:
    w = weights().detach()
    theta = _newton(lambda t: _inner(t, w, x, y), x.shape[1])
    h = torch.autograd.functional.hessian(lambda t: _inner(t, w, x, y), theta)
    gv = torch.autograd.functional.jacobian(lambda t: _losses(t, xv, yv).mean(), theta)
    v = torch.linalg.solve(h, gv)  # H⁻¹ ∇L_V
    # d L_V(θ*(λ)) / dλ = −∂/∂λ [∇_θ L_w(θ*, λ)ᵀ v]
    t = theta.clone().requires_grad_(True)
    grad_theta = torch.autograd.grad(_inner(t, weights(), x, y), t, create_graph=True)[0]
    params = list(weights.parameters())
    return -torch.cat([g.reshape(-1) for g in torch.autograd.grad(grad_theta @ v, params)])


def _penalty_hypergradient(x, y, xv, yv, weights, alpha: float) -> torch.Tensor:
    w = weights().detach()
    u = _newton(lambda t: _inner(t, w, x, y), x.shape[1])
    theta = _newton(lambda t: _losses(t, xv, yv).mean() / alpha + _inner(t, w, x, y), x.shape[1])
    loss = penalty_lambda_loss(weights(), _losses(theta, x, y), _losses(u, x, y), alpha)
    params = list(weights.parameters())
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


@pytest.mark.parametrize("seed", [0, 1])
def test_penalty_hypergradient_matches_implicit_function(seed):
    x, y, xv, yv, weights = _problem(seed)
    exact = _exact_hypergradient(x, y, xv, yv, weights)
    assert exact.abs().max() > 1e-3  # the check is not vacuous
    errors = []
    for alpha in (10.0, 100.0, 1000.0, 10000.0):
        approx = _penalty_hypergradient(x, y, xv, yv, weights, alpha)
        errors.append(float((approx - exact).norm() / exact.norm()))
    # first-order method: the error shrinks like 1/α
    assert errors[-1] < 1e-3, errors
    assert errors[-1] < errors[1] < errors[0], errors
    assert errors[2] < 0.2 * errors[1], errors


def test_penalty_hypergradient_for_free_weights():
    x, y, xv, yv, _ = _problem(3)
    base = np.random.default_rng(3).uniform(0.1, 0.9, size=len(y))
    weights = PairWeights(base, "free").double()
    exact = _exact_hypergradient(x, y, xv, yv, weights)
    approx = _penalty_hypergradient(x, y, xv, yv, weights, 1e4)
    assert float((approx - exact).norm() / exact.norm()) < 1e-3
    # a label flipped against the validation data gets pushed down (positive gradient) on average
    assert float(exact[:8].mean()) > float(exact[8:].mean())


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    base=arrays(np.float64, st.integers(1, 20), elements=st.floats(0, 1)),
    mode=st.sampled_from(["features", "source", "free"]),
    scale=finite,
    data=st.data(),
)
def test_weights_always_finite_and_in_range(base, mode, scale, data):
    n = len(base)
    feats = data.draw(arrays(np.float32, (n, 3), elements=st.floats(-1e3, 1e3, width=32)))
    groups = data.draw(arrays(np.int64, n, elements=st.integers(0, 3)))
    weights = PairWeights(base, mode, features=feats, groups=groups)
    with torch.no_grad():
        for p in weights.parameters():
            p.fill_(scale)
    w = weights.weights()
    assert w.shape == (n,)
    assert np.all(np.isfinite(w))
    assert np.all(w >= W_MIN - 1e-6) and np.all(w <= 1.0 + 1e-6)


@settings(max_examples=60, deadline=None)
@given(
    p=arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 15)),
        elements=st.one_of(st.floats(0, 1), st.just(float("nan"))),
    )
)
def test_stage1_quantities_finite_and_in_range(p):
    r = initial_weights(p)
    for arr in (r.p_mean, r.uncertainty, r.disagreement, r.margin, r.weight):
        assert np.all(np.isfinite(arr))
    assert np.all((r.weight >= W_MIN) & (r.weight <= 1))
    assert np.all((r.uncertainty >= 0) & (r.uncertainty <= 1 + 1e-9))
    assert np.all((r.disagreement >= 0) & (r.disagreement <= 1))


def test_stage1_weights_order_pairs_sensibly():
    # members agree the pair is right / split / agree it is flipped
    p = np.array([[0.9, 0.6, 0.1], [0.95, 0.4, 0.05], [0.85, 0.55, 0.2]])
    w = initial_weights(p).weight
    assert w[0] > w[1] > w[2]
