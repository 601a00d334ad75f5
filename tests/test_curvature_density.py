"""Stochastic Lanczos quadrature: exact Gauss moments per start, random starts within bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from losslab.curvature import hessian_operator, slq
from losslab.errors import UserError
from losslab.objective import Objective

pytestmark = pytest.mark.usefixtures("one_thread")


def _rotated(eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return (Q * eigenvalues) @ Q.T


def _indefinite(d: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    values = torch.cat(
        [
            torch.tensor([8.0, 5.0, -2.0], dtype=torch.float64),
            torch.rand(d - 3, generator=g, dtype=torch.float64) - 0.2,
        ]
    )
    return _rotated(values), values


def _assert_gauss_exact(nodes: np.ndarray, weights: np.ndarray, A: torch.Tensor, v: torch.Tensor, steps: int) -> None:
    """Σⱼ τⱼ θⱼᵖ = vᵀAᵖv/‖v‖² for p ≤ 2·steps − 1 (Golub & Meurant 2010, Thm 6.2)."""
    v = v / v.norm()
    scale = float(torch.linalg.matrix_norm(A, 2))
    w = v.clone()
    for p in range(2 * steps):
        exact = float(v @ w)  # vᵀ Aᵖ v
        quadrature = float((weights * nodes**p).sum())
        # Each side carries round-off of order eps·‖A‖ᵖ·p; 1e-10 leaves a wide margin.
        assert abs(quadrature - exact) <= 1e-10 * scale**p * (p + 1), p
        w = A @ w


def test_quadrature_is_exact_for_low_degree_moments():
    A, _ = _indefinite()
    g = torch.Generator().manual_seed(1)
    probes = torch.randn(3, A.shape[0], generator=g, dtype=torch.float64)
    steps = 10
    rho = slq(A, probes=probes, steps=steps)
    assert rho.nodes.shape == (3, steps) and rho.hvps == 3 * steps
    np.testing.assert_allclose(rho.weights.sum(1), 1.0, atol=1e-12)
    for b in range(3):
        _assert_gauss_exact(rho.nodes[b], rho.weights[b], A, probes[b], steps)


def test_full_krylov_space_recovers_the_spectrum():
    values = torch.linspace(-1.0, 2.0, 20, dtype=torch.float64)
    A = _rotated(values, seed=2)
    rho = slq(A, starts=2, steps=25)  # capped at d = 20 steps
    assert rho.nodes.shape == (2, 20)
    for b in range(2):
        np.testing.assert_allclose(np.sort(rho.nodes[b]), values.numpy(), atol=1e-10)


def test_breakdown_keeps_the_quadrature_exact():
    """Three distinct eigenvalues: the Krylov space is invariant after three steps. Later
    directions are fresh and decoupled (weight only where they duplicate a node), so the
    quadrature stays exact for every polynomial."""
    values = torch.tensor([1.0] * 20 + [2.0] * 20 + [5.0] * 10, dtype=torch.float64)
    A = _rotated(values, seed=3)
    g = torch.Generator().manual_seed(4)
    probes = torch.randn(2, 50, generator=g, dtype=torch.float64)
    rho = slq(A, probes=probes, steps=8)
    for b in range(2):
        heavy = rho.weights[b] > 1e-10
        assert set(np.round(rho.nodes[b][heavy], 8)) == {1.0, 2.0, 5.0}
        _assert_gauss_exact(rho.nodes[b], rho.weights[b], A, probes[b], 8)


def test_random_starts_estimate_trace_and_moments_within_their_error():
    A, values = _indefinite()
    for seed in range(8):
        rho = slq(A, starts=6, steps=30, seed=seed)
        for power in (1, 2, 3):
            estimate, stderr = rho.moment(power)
            assert abs(estimate - float((values**power).sum())) <= 4.5 * stderr
        assert rho.trace == pytest.approx(rho.moment(1)[0], rel=1e-12)
        assert rho.trace_stderr == pytest.approx(rho.moment(1)[1], rel=1e-12)


def test_density_is_normalized_and_bounded_by_the_spectrum():
    A, values = _indefinite()
    rho = slq(A, seed=0)
    step = rho.grid[1] - rho.grid[0]
    assert float(rho.density.sum() * step) == pytest.approx(1.0, abs=1e-3)
    # Ritz values lie inside the spectrum; the outliers 8, 5, −2 are found to high accuracy.
    assert float(values.min()) - 1e-12 <= rho.lambda_min and rho.lambda_max <= float(values.max()) + 1e-12
    assert rho.lambda_max == pytest.approx(8.0, abs=1e-8)
    assert rho.lambda_min == pytest.approx(-2.0, abs=1e-8)
    assert rho.hvps == 4 * 48
    default = math.sqrt(1e-5) * 5.0  # Ghorbani et al.: σ² = 1e-5 on the spectrum rescaled to [−1, 1]
    assert rho.sigma == pytest.approx(default, rel=1e-6)


def test_chebyshev_markov_stieltjes_bounds_hold_per_start():
    """lower ≤ vᵀ 1[A < t] v ≤ upper for every start and threshold, with vᵀ 1[A < t] v computed
    from the exact eigendecomposition, and the quadrature's own estimate in between."""
    A, _ = _indefinite()
    values, vectors = torch.linalg.eigh(A)
    g = torch.Generator().manual_seed(3)
    probes = torch.randn(4, A.shape[0], generator=g, dtype=torch.float64)
    rho = slq(A, probes=probes, steps=12)
    unit = probes / probes.norm(dim=1, keepdim=True)
    mass = (unit @ vectors) ** 2  # [starts, d]: the spectral measure seen from each start
    for threshold in (-3.0, -1.0, -0.1, 0.0, 0.3, 0.79, 2.0, 6.0, 9.0):
        exact = (mass * (values < threshold)).sum(1).numpy()
        lower, upper = rho.fraction_bounds(threshold)
        assert (lower <= exact + 1e-12).all() and (exact <= upper + 1e-12).all(), threshold
        estimate = rho.fraction_below(threshold)
        assert (lower <= estimate + 1e-15).all() and (estimate <= upper + 1e-15).all()


def test_quadrature_of_tiny_model_hessians(tiny_case):
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    op = hessian_operator(obj)
    H = op.dense()
    g = torch.Generator().manual_seed(0)
    probes = torch.randn(2, obj.dim, generator=g, dtype=torch.float64)
    steps = min(6, obj.dim)
    rho = slq(op, probes=probes, steps=steps)
    for b in range(2):
        _assert_gauss_exact(rho.nodes[b], rho.weights[b], H, probes[b], steps)


def test_bad_arguments():
    A = torch.eye(4, dtype=torch.float64)
    with pytest.raises(UserError, match="probes"):
        slq(A, probes=torch.ones(2, 3))
    with pytest.raises(UserError, match="'starts' parameter"):
        slq(A, starts=0)
    with pytest.raises(UserError, match="'sigma' parameter"):
        slq(A, sigma=0.0)
