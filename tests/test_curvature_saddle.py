"""The saddle index on matrices with known negative spectra and on tiny-model Hessians."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from losslab.curvature import extreme_eigenpairs, hessian_operator, saddle_index, slq
from losslab.errors import UserError
from losslab.objective import Objective

pytestmark = pytest.mark.usefixtures("one_thread")


def _rotated(eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return (Q * eigenvalues) @ Q.T


@pytest.fixture(scope="module")
def saddle_matrix() -> torch.Tensor:
    """400 eigenvalues: 20 in [−2, −1], 380 in [0.5, 3] (a saddle with 5 % negative curvature)."""
    g = torch.Generator().manual_seed(11)
    negative = -1.0 - torch.rand(20, generator=g, dtype=torch.float64)
    positive = 0.5 + 2.5 * torch.rand(380, generator=g, dtype=torch.float64)
    return _rotated(torch.cat([negative, positive]), seed=5)


def test_fraction_interval_and_certified_count(saddle_matrix):
    """The quadrature's step sits in a spectral gap, where Gauss quadrature converges fast, so each
    start estimates ‖P₋v‖² and the interval over starts covers 5 % for every seed in the set."""
    for seed in range(6):
        s = saddle_index(saddle_matrix, tau=0.1, seed=seed)
        assert s.fraction_low <= 0.05 <= s.fraction_high
        assert s.fraction_high - s.fraction_low <= 0.12  # 4 starts: t₀.₉₇₅ = 3.18
        assert s.bound_low <= s.fraction_low and s.fraction_high <= s.bound_high
        assert s.bound_low <= 0.05 <= s.bound_high
        assert s.count_lower == 5 and s.count is None  # five bottom pairs, all below −τ
        assert s.verdict == "saddle"
        assert s.count_estimate == pytest.approx(s.fraction * 400)


def test_exact_count_when_the_bottom_pairs_reach_past_the_threshold(saddle_matrix):
    exact = np.sort(torch.linalg.eigvalsh(saddle_matrix).numpy())
    s = saddle_index(saddle_matrix, tau=0.1, k=22, tol=1e-7, max_hvps=3000)
    assert s.count_lower == 20 and s.count == 20
    assert s.lambda_min == pytest.approx(exact[0], abs=1e-7)
    assert s.ratio == pytest.approx(abs(exact[0]) / exact[-1], rel=1e-7)


def test_minimum_is_recognized():
    """PSD up to tiny negative eigenvalues above −τ: no eigenvalue below −τ, converged λmin."""
    values = torch.cat(
        [
            torch.tensor([-1e-6, 0.0, 0.0], dtype=torch.float64),
            torch.linspace(0.1, 4.0, 197, dtype=torch.float64),
        ]
    )
    s = saddle_index(_rotated(values, seed=1), tau=1e-3, tol=1e-10, max_hvps=2000)
    assert s.verdict == "minimum" and s.count == 0 and s.count_lower == 0
    # No node lies below −τ; the bound's upper end is the weight the quadrature cannot place.
    assert s.fraction == 0.0 and s.fraction_high == 0.0
    assert s.bound_low == 0.0 and 0.0 < s.bound_high < 0.1
    assert s.lambda_min == pytest.approx(-1e-6, abs=1e-8)


def test_unconverged_bottom_is_undecided():
    values = torch.linspace(-1e-4, 1.0, 500, dtype=torch.float64)  # no gap at the bottom
    s = saddle_index(_rotated(values, seed=2), tau=1e-3, tol=1e-12, max_hvps=30)
    assert s.verdict == "undecided" and s.count is None


def test_reuses_given_results_without_products(saddle_matrix):
    from losslab.curvature import as_operator

    op = as_operator(saddle_matrix)
    top, bottom = extreme_eigenpairs(op, 1, 5, seed=0)
    density = slq(op, seed=0)
    before = op.count
    s = saddle_index(op, tau=0.1, top=top, bottom=bottom, density=density)
    assert op.count == before and s.hvps == 0
    assert s.tau == 0.1 and s.lambda_max == top.eigenvalues[0]
    assert s.cdf.shape == (density.starts, len(density.grid))
    assert (np.diff(s.cdf, axis=1) >= -1e-15).all()  # cumulative


def test_default_tau_is_relative_to_lambda_max(saddle_matrix):
    s = saddle_index(saddle_matrix, seed=0)
    assert s.tau == pytest.approx(1e-3 * s.lambda_max)


def test_tiny_model_counts_agree_with_dense_eigenvalues(tiny_case):
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    op = hessian_operator(obj)
    exact = np.sort(torch.linalg.eigvalsh(op.dense()).numpy())
    k = min(5, obj.dim - 1)
    s = saddle_index(op, k=k, tol=1e-10, seed=0)
    truth = int((exact < -s.tau).sum())
    assert s.count_lower <= truth  # interlacing: a certified lower bound, always
    if s.count is not None:
        assert s.count == truth
    assert s.lambda_min == pytest.approx(exact[0], abs=1e-8 * np.abs(exact).max())


def test_bad_arguments(saddle_matrix):
    with pytest.raises(UserError, match="'confidence' parameter"):
        saddle_index(saddle_matrix, confidence=1.0)
    with pytest.raises(UserError, match="'tau' parameter"):
        saddle_index(saddle_matrix, tau=-1.0)
