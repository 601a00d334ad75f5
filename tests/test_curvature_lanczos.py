"""Lanczos eigenpairs against dense eigensolvers: synthetic spectra and tiny-model Hessians."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from losslab.curvature import as_operator, extreme_eigenpairs, hessian_operator, lanczos
from losslab.errors import UserError
from losslab.objective import Objective

pytestmark = pytest.mark.usefixtures("one_thread")


SEEDS = range(5)


def _rotated(eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Q diag(λ) Qᵀ with a random orthogonal Q: a dense matrix with exactly these eigenvalues."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
    return (Q * eigenvalues) @ Q.T


def _spiked_wishart() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """diag(5, 4, 3, 0, …) + ZZᵀ/(10m) in dimension d = 2,000 with m = 200: three outliers
    above a Marchenko–Pastur bulk in [0.47, 1.73] (outliers plus a bulk, as in Papyan 2019).

    A = BBᵀ with B = [√5 e₁, 2 e₂, √3 e₃, Z/√(10m)], so its nonzero eigenpairs follow exactly
    from the 203 × 203 matrix BᵀB: eigenvalues the same, eigenvectors B x / ‖B x‖. Returns
    (A, eigenvalues descending, eigenvectors as columns).
    """
    d, m = 2000, 200
    g = torch.Generator().manual_seed(0)
    B = torch.zeros(d, m + 3, dtype=torch.float64)
    B[0, 0], B[1, 1], B[2, 2] = 5**0.5, 2.0, 3**0.5
    B[:, 3:] = torch.randn(d, m, generator=g, dtype=torch.float64) / (10 * m) ** 0.5
    values, small = torch.linalg.eigh(B.T @ B)
    values, small = values.flip(0), small.flip(1)
    vectors = B @ small
    return B @ B.T, values, vectors / vectors.norm(dim=0)


@pytest.fixture(scope="module")
def spiked() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _spiked_wishart()


@pytest.fixture(scope="module")
def spiked_wishart(spiked) -> torch.Tensor:
    return spiked[0]


def test_top_eigenpairs_of_spiked_wishart(spiked):
    A, exact, vectors = spiked
    exact = exact.numpy()
    assert exact[0] > 5.0 and exact[3] < 2.0  # three outliers above the bulk
    for seed in SEEDS:
        top = lanczos(A, 5, tol=1e-8, seed=seed)
        assert top.converged.all()
        # Weyl: each certified Ritz value is within its residual of an eigenvalue; the
        # r²/gap estimate is far tighter. Both must hold against the dense eigenvalues.
        err = np.abs(top.eigenvalues - exact[:5])
        assert (err <= top.residuals + 1e-12).all()
        assert (err <= top.error_estimates + 1e-12).all()
        assert err.max() <= 1e-8 * exact[0]
        # The residuals are real ‖Av − λv‖, recomputed here from the returned vectors.
        V = torch.as_tensor(top.vectors)
        measured = (V @ A - torch.as_tensor(top.eigenvalues)[:, None] * V).norm(dim=1).numpy()
        np.testing.assert_allclose(top.residuals, measured, rtol=1e-6, atol=1e-13)
        np.testing.assert_allclose(V.norm(dim=1).numpy(), 1.0, rtol=1e-12)
        # Vectors span the same directions as the dense eigenvectors (up to sign).
        overlap = (V @ vectors[:, :5]).abs().diagonal().numpy()  # type: ignore[index]
        assert overlap.min() >= 1 - 1e-8
        assert top.hvps < 200


def test_lanczos_bound_matches_measured_residual(spiked_wishart):
    """|β_m e_mᵀ s| is the residual norm in exact arithmetic; with float64 full reorthogonalization
    the two agree to ~1e-12·‖A‖ (round-off of the products), so compare at that floor."""
    certified = lanczos(spiked_wishart, 5, tol=1e-6, seed=1)
    bound = lanczos(spiked_wishart, 5, tol=1e-6, seed=1, certify=False)
    assert bound.residual_source == "bound" and certified.residual_source == "product"
    np.testing.assert_allclose(bound.eigenvalues, certified.eigenvalues, rtol=0, atol=1e-14)
    floor = 1e-12 * certified.norm_estimate
    np.testing.assert_allclose(bound.residuals, certified.residuals, rtol=1e-3, atol=floor)
    assert certified.hvps == bound.hvps + 5  # certification costs one product per pair


def test_bottom_and_both_ends_of_an_indefinite_matrix():
    d = 400
    eigenvalues = torch.cat(
        [
            torch.tensor([-3.0, -2.0, -1.5, -1.2, -1.1]),
            torch.linspace(0.0, 2.0, d - 10),
            torch.tensor([6.0, 5.0, 4.5, 4.2, 4.1]),
        ]
    ).double()
    A = _rotated(eigenvalues, seed=3)
    exact = np.sort(eigenvalues.numpy())
    for seed in SEEDS:
        bottom = lanczos(A, 5, which="bottom", tol=1e-9, seed=seed)
        assert bottom.converged.all()
        np.testing.assert_allclose(bottom.eigenvalues, exact[:5], rtol=0, atol=1e-9 * 6)
        top, low = extreme_eigenpairs(A, 3, 4, tol=1e-9, seed=seed)
        np.testing.assert_allclose(top.eigenvalues, exact[::-1][:3], rtol=0, atol=1e-9 * 6)
        np.testing.assert_allclose(low.eigenvalues, exact[:4], rtol=0, atol=1e-9 * 6)
        assert top.hvps == low.hvps  # one shared Krylov space


def test_thick_restart_converges_in_a_small_basis(spiked):
    spiked_wishart, exact = spiked[0], spiked[1][:5].numpy()
    small = lanczos(spiked_wishart, 5, tol=1e-8, max_basis=12, max_hvps=2000)
    assert small.restarts > 0 and small.converged.all()
    np.testing.assert_allclose(small.eigenvalues, exact, rtol=0, atol=1e-8 * exact[0])


def test_small_operators_are_solved_exactly():
    """When the Krylov space reaches dimension d the Ritz pairs are the eigenpairs."""
    A = _rotated(torch.tensor([3.0, -1.0, 0.5, 0.5, 2.0], dtype=torch.float64), seed=1)
    top, bottom = extreme_eigenpairs(A, 2, 3)
    np.testing.assert_allclose(top.eigenvalues, [3.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(bottom.eigenvalues, [-1.0, 0.5, 0.5], atol=1e-12)
    assert bottom.converged.all()


def test_warm_start_costs_fewer_products(spiked_wishart):
    cold = lanczos(spiked_wishart, 1, tol=1e-8, seed=0)
    g = torch.Generator().manual_seed(9)
    perturbation = 1e-3 * torch.randn(spiked_wishart.shape, generator=g, dtype=torch.float64)
    nearby = spiked_wishart + (perturbation + perturbation.T) / 2
    warm = lanczos(nearby, 1, tol=1e-8, start=cold)
    again = lanczos(nearby, 1, tol=1e-8, seed=0)
    assert warm.converged.all() and again.converged.all()
    assert abs(warm.eigenvalues[0] - again.eigenvalues[0]) <= 1e-7
    assert warm.hvps < again.hvps


def test_budget_exhausted_reports_unconverged():
    A = torch.diag(torch.linspace(0.0, 1.0, 500, dtype=torch.float64))  # no gap: slow convergence
    result = lanczos(A, 3, tol=1e-12, max_hvps=20)
    assert result.hvps <= 20 and not result.converged.all()
    assert (result.residuals > 1e-12 * result.norm_estimate).any()


def test_eigenpairs_of_tiny_model_hessians(tiny_case):
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    op = hessian_operator(obj)
    H = op.dense()  # checked against torch.autograd.functional.hessian in test_curvature_operators
    exact = np.sort(torch.linalg.eigvalsh(H).numpy())
    k = 3
    top, bottom = extreme_eigenpairs(op, k, k, tol=1e-10)
    scale = np.abs(exact).max()
    np.testing.assert_allclose(top.eigenvalues, exact[::-1][:k], rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(bottom.eigenvalues, exact[:k], rtol=0, atol=1e-9 * scale)
    assert top.operator == "hessian"


def test_float32_operator_reaches_1e5():
    """A float32 operator with a float64 basis still certifies 1e-5 (product round-off ~1e-7)."""
    g = torch.Generator().manual_seed(2)
    eigenvalues = torch.cat([torch.tensor([10.0, 8.0, 7.0]), torch.rand(997, generator=g)]).double()
    A = _rotated(eigenvalues).float()
    top = lanczos((A + A.T) / 2, 3, tol=1e-5)
    assert top.converged.all()
    np.testing.assert_allclose(top.eigenvalues, [10.0, 8.0, 7.0], rtol=1e-5)
    assert top.vectors.dtype == np.float32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "'k' parameter"),
        ({"k": 11}, "'k' parameter"),
        ({"k": 2, "tol": 0.0}, "'tol' parameter"),
        ({"k": 2, "tol": -1e-3}, "'tol' parameter"),
        ({"k": 2, "which": "middle"}, "'which' parameter"),
        ({"k": 2, "start": torch.ones(3)}, "'start' vectors"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(UserError, match=message):
        lanczos(torch.eye(10, dtype=torch.float64), **kwargs)


def test_zero_pairs_is_an_error():
    with pytest.raises(UserError, match="at least one eigenpair"):
        extreme_eigenpairs(torch.eye(3, dtype=torch.float64), 0, 0)


def test_too_many_pairs_for_the_dimension():
    with pytest.raises(UserError, match="dimension 4"):
        extreme_eigenpairs(as_operator(torch.eye(4, dtype=torch.float64)), 3, 2)
