"""PTLoss: the loss, the proxy teacher, ε selection and cross-fitting (pure torch/numpy)."""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from models.ptloss import (
    cross_fit,
    is_valid_eps,
    kd_loss,
    proxy_teacher,
    ptloss,
    sample_eps,
    select_eps,
    temper,
)
from models.ptloss.proxy import _fprime


@st.composite
def problems(draw, max_k: int = 5, max_m: int = 4, zeros: bool = False):
    """(teacher (B, K), eps (K, M)) with every f_k decreasing and convex: ε in [−0.04, 3] keeps
    Σ m(m−1)·max(0, −ε_m) < 1 for M ≤ 4."""
    k = draw(st.integers(2, max_k))
    m = draw(st.integers(1, max_m))
    b = draw(st.integers(1, 4))
    lo = 0.0 if zeros else 0.01
    rows = draw(
        st.lists(st.lists(st.floats(lo, 1.0), min_size=k, max_size=k), min_size=b, max_size=b)
    )
    p = np.asarray(rows)
    assume((p.sum(1) > 0.05).all())
    p = p / p.sum(1, keepdims=True)
    eps = np.asarray(draw(st.lists(st.floats(-0.04, 3.0), min_size=k * m, max_size=k * m))).reshape(
        k, m
    )
    assume(is_valid_eps(eps))
    return p, eps


def _objective(q: np.ndarray, p: np.ndarray, eps: np.ndarray) -> float:
    """Σ_k p_k f_k(q_k), f_k(q) = −log q + Σ_m ε_{k,m} (1 − q)^m."""
    m = np.arange(1, eps.shape[1] + 1)
    f = -np.log(q) + ((1 - q)[:, None] ** m * eps).sum(1)
    return float((p * f).sum())


# --------------------------------------------------------------------------- loss
@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(2, 7),
    st.integers(1, 6),
    st.floats(0.5, 4.0),
    st.integers(0, 10_000),
)
def test_zero_eps_gives_kd_gradients_exactly(b, k, m, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, generator=g, dtype=torch.float64) * 3
    teacher = temper(torch.softmax(torch.randn(b, k, generator=g, dtype=torch.float64), -1), 2.0)
    z1 = logits.clone().requires_grad_()
    z2 = logits.clone().requires_grad_()
    ptloss(z1, teacher, torch.zeros(k, m, dtype=torch.float64), temperature).backward()
    kd_loss(z2, teacher, temperature).backward()
    assert torch.equal(z1.grad, z2.grad)


def test_ptloss_matches_the_written_formula():
    logits = torch.tensor([[1.0, -0.5, 0.2]], dtype=torch.float64)
    teacher = torch.tensor([[0.6, 0.1, 0.3]], dtype=torch.float64)
    eps = torch.tensor([[0.5, -0.02], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    p = torch.softmax(logits, -1)[0]
    want = sum(
        teacher[0, i] * (-torch.log(p[i]) + eps[i, 0] * (1 - p[i]) + eps[i, 1] * (1 - p[i]) ** 2)
        for i in range(3)
    )
    assert torch.allclose(ptloss(logits, teacher, eps), want)


def test_ptloss_rejects_eps_of_the_wrong_shape():
    with pytest.raises(ValueError, match="eps must have shape"):
        ptloss(torch.zeros(2, 3), torch.full((2, 3), 1 / 3), torch.zeros(4, 5))


# --------------------------------------------------------------------------- proxy teacher
@settings(max_examples=40, deadline=None)
@given(problems(zeros=True))
def test_proxy_teacher_is_a_distribution(problem):
    p, eps = problem
    q = proxy_teacher(p, eps).numpy()
    assert q.shape == p.shape
    assert (q >= 0).all()
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-9)
    assert (q[p == 0] < 1e-9).all()  # a class the teacher rules out stays out


@settings(max_examples=25, deadline=None)
@given(problems(zeros=True))
def test_proxy_teacher_equals_the_teacher_at_zero_eps(problem):
    p, eps = problem
    np.testing.assert_allclose(proxy_teacher(p, np.zeros_like(eps)).numpy(), p, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(problems())
def test_bisection_converges_to_the_lagrange_conditions(problem):
    """p_k f'_k(q_k) is the same λ for every class with 0 < q_k < 1."""
    p, eps = problem
    q = proxy_teacher(p, eps)
    g = torch.as_tensor(p) * _fprime(q, torch.as_tensor(eps))  # (B, K)
    for row_q, row_g in zip(q, g):
        inside = (row_q > 1e-6) & (row_q < 1 - 1e-6)
        if inside.sum() >= 2:
            lam = row_g[inside]
            assert float((lam.max() - lam.min()) / lam.abs().mean()) < 1e-6


@settings(max_examples=25, deadline=None)
@given(problems(max_k=4, max_m=3))
def test_proxy_teacher_minimizes_ptloss_over_the_simplex(problem):
    """Checked against scipy's SLSQP on the simplex: same point, and never a worse objective."""
    p, eps = problem
    q = proxy_teacher(p, eps).numpy()
    for pi, qi in zip(p, q):
        k = len(pi)
        res = minimize(
            _objective,
            np.full(k, 1.0 / k),
            args=(pi, eps),
            method="SLSQP",
            bounds=[(1e-9, 1.0)] * k,
            constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0}],
            options={"ftol": 1e-14, "maxiter": 500},
        )
        assert res.success
        assert _objective(qi, pi, eps) <= res.fun + 1e-8
        np.testing.assert_allclose(qi, res.x, atol=2e-3)


def test_positive_eps_sharpens_the_teacher():
    p = np.array([[0.6, 0.3, 0.1]])
    q = proxy_teacher(p, np.ones((3, 2))).numpy()
    assert q[0, 0] > 0.6 and q[0, 2] < 0.1


def test_invalid_eps_is_refused_with_a_reason():
    assert not is_valid_eps(np.array([[-2.0], [0.0]]))  # f_0 increasing near q = 1
    with pytest.raises(ValueError, match="non-convex or increasing"):
        proxy_teacher(np.array([[0.5, 0.5]]), np.array([[-2.0], [0.0]]))


# --------------------------------------------------------------------------- selection
def test_sampled_candidates_start_with_kd_and_are_all_valid():
    c = sample_eps(4, 5, 20, seed=3)
    assert c.shape == (20, 4, 5)
    assert not c[0].any()
    assert all(is_valid_eps(e) for e in c)


def test_selection_falls_back_to_kd_when_no_candidate_gets_closer():
    """A teacher that is confidently wrong: sharpening candidates only move it further away."""
    y = np.array([0, 1, 2, 1])
    teacher = 0.2 * np.eye(3)[y] + 0.8 * np.eye(3)[(y + 1) % 3]
    candidates = np.stack([np.zeros((3, 2)), np.ones((3, 2)), 3 * np.ones((3, 2))])
    sel = select_eps(teacher, y, candidates)
    assert sel.index == 0 and sel.is_kd
    assert (sel.mse[1:] > sel.mse[0]).all()


def test_selection_prefers_a_sharper_proxy_for_a_right_but_soft_teacher():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    teacher = 0.5 * np.eye(3)[y] + 0.5 * rng.dirichlet(np.ones(3), 200)
    sel = select_eps(teacher, y, n_candidates=24)
    assert sel.index != 0
    assert sel.mse[sel.index] < sel.mse[0]
    assert sel.summary()["tv"] <= sel.summary()["tv_kd"] + 1e-9


# --------------------------------------------------------------------------- cross-fitting
def test_cross_fit_never_labels_a_row_with_a_teacher_that_trained_on_it():
    n, seen = 23, []

    def fit_predict(train, held, progress):
        assert not set(train) & set(held)
        seen.extend(held.tolist())
        probs = np.zeros((len(held), 2))
        probs[:, 0] = 1.0  # "the teacher" labels everything class 0
        return probs, np.full((3, 2), 0.5)

    cf = cross_fit(n, fit_predict, n_folds=4)
    assert sorted(seen) == list(range(n))
    assert cf.oof.shape == (n, 2) and (cf.oof[:, 0] == 1).all()
    assert cf.extra.shape == (3, 2)
    assert set(cf.fold.tolist()) == {0, 1, 2, 3}
