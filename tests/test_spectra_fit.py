"""Layer spectra: Marchenko–Pastur on Gaussian matrices, α recovered on known power-law spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from losslab.errors import UserError
from losslab.report import figures_of
from losslab.spectra import (
    SpectraConfig,
    esd,
    fit_power_law,
    layer_spectra,
    marchenko_pastur_cdf,
    marchenko_pastur_edges,
    power_law_sample,
    weight_matrices,
)
from losslab.spectra.powerlaw import _select


def _ks(values: np.ndarray, cdf: np.ndarray) -> float:
    n = len(values)
    emp = np.arange(1, n + 1) / n
    return float(max(np.max(np.abs(emp - cdf)), np.max(np.abs(emp - 1 / n - cdf))))


def test_mp_cdf_closed_form_at_ratio_one() -> None:
    # y = 1, σ² = 1: ρ(λ) = √(4 − λ)/(2π√λ) on [0, 4], whose CDF at λ = 4 sin²φ is (2φ + sin 2φ)/π.
    phi = np.linspace(0.05, 1.5, 7)
    lam = 4 * np.sin(phi) ** 2
    np.testing.assert_allclose(marchenko_pastur_cdf(lam, 1.0, 1.0), (2 * phi + np.sin(2 * phi)) / np.pi, atol=1e-5)


@pytest.mark.parametrize(("N", "M", "sigma"), [(400, 200, 1.0), (300, 300, 0.5), (256, 64, 2.0)])
def test_gaussian_esd_matches_marchenko_pastur_and_no_credible_power_law(N: int, M: int, sigma: float) -> None:
    rng = np.random.default_rng(N + M)
    W = sigma * rng.standard_normal((N, M))
    lam = esd(W) / N
    ratio = M / N
    low, high = marchenko_pastur_edges(sigma**2, ratio)
    # KS distance of M ≥ 64 eigenvalues to their limit law: finite-N deviations are O(1/M) and
    # the sampling error of a KS statistic at M = 64 is ~0.1 at 5 %; the measured values are 0.01–0.03.
    assert _ks(lam, marchenko_pastur_cdf(lam, sigma**2, ratio)) < 0.06
    # Edges: λmax fluctuates on the Tracy–Widom scale N^(-2/3) ≈ 2 %; 5 % relative is several of those.
    assert lam[-1] == pytest.approx(high, rel=0.05)
    assert lam[0] == pytest.approx(low, abs=0.05 * high)
    fit = fit_power_law(lam * N, bootstrap=40, gof=20, bulk_edge=high * N)
    assert not fit.credible and any("Marchenko" in r for r in fit.reasons)


def test_power_law_alpha_recovered_within_interval_over_seeds() -> None:
    alpha, covered, estimates = 3.0, 0, []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        # A matrix with this spectrum: W = U diag(√λ) Vᵀ with random orthonormal U [N, M], V [M, M].
        lam = power_law_sample(rng, 300, alpha, 1.0)
        U, _ = np.linalg.qr(rng.standard_normal((400, 300)))
        V, _ = np.linalg.qr(rng.standard_normal((300, 300)))
        W = U @ np.diag(np.sqrt(lam)) @ V.T
        np.testing.assert_allclose(esd(W), np.sort(lam), rtol=1e-8)
        fit = fit_power_law(esd(W), bootstrap=60, gof=10, seed=seed)
        covered += fit.alpha_low <= alpha <= fit.alpha_high
        estimates.append(fit.alpha)
        assert fit.credible or any("p =" in r for r in fit.reasons), fit.reasons
    # A 90 % interval covers about 9 of 10; P(≤ 6 of 10) = 1.3 % if the coverage is right.
    assert covered >= 7, covered
    # The MLE's standard error at m ≈ 250 tail values is (α−1)/√m ≈ 0.13; the mean of 10 is within 0.15.
    assert abs(np.mean(estimates) - alpha) < 0.15, estimates


def test_select_matches_a_slow_loop() -> None:
    rng = np.random.default_rng(7)
    x = np.sort(np.concatenate([rng.lognormal(size=80), power_law_sample(rng, 40, 2.5, 3.0)]))
    best = (np.inf, 0.0, 0.0)
    for i in range(len(x) - 10 + 1):  # Clauset's recipe, written out: every x_min, MLE α, KS distance
        tail = x[i:]
        a = 1 + len(tail) / np.sum(np.log(tail / x[i]))
        model = 1 - (tail / x[i]) ** (1 - a)
        ecdf_hi = np.arange(1, len(tail) + 1) / len(tail)
        D = max(np.abs(ecdf_hi - model).max(), np.abs(ecdf_hi - 1 / len(tail) - model).max())
        if D < best[0]:
            best = (D, a, x[i])
    alpha, xmin, D, _ = _select(x, 10)
    assert (alpha, xmin, D) == pytest.approx((best[1], best[2], best[0]), rel=1e-10)


def test_steep_tail_and_too_few_values_are_flagged() -> None:
    rng = np.random.default_rng(3)
    fit = fit_power_law(power_law_sample(rng, 200, 9.0, 1.0), bootstrap=20, gof=0)
    assert any("alpha" in r and "> 6" in r for r in fit.reasons)
    with pytest.raises(UserError, match="min_tail"):
        fit_power_law(np.ones(5))


def test_weight_matrices_linear_and_conv_reshape() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4, 12), nn.BatchNorm1d(12))
    flat = weight_matrices(model)
    assert list(flat) == ["0.weight", "3.weight"]
    assert flat["0.weight"][0].shape == (16, 27) and flat["3.weight"][0].shape == (12, 64)
    np.testing.assert_array_equal(flat["0.weight"][0], model[0].weight.detach().double().reshape(16, 27).numpy())
    slices = weight_matrices(model, conv="slices")["0.weight"]
    assert len(slices) == 9 and slices[4].shape == (16, 3)
    np.testing.assert_array_equal(slices[4], model[0].weight.detach().double()[:, :, 1, 1].numpy())
    # Pooled ESD of the slices: 9 × min(16, 3) eigenvalues.
    assert len(esd(slices)) == 27


def test_layer_spectra_of_an_untrained_mlp_are_random_matrices() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 200), nn.ReLU(), nn.Linear(200, 100))
    result = layer_spectra(model, SpectraConfig(bootstrap=20, gof=10))
    assert result.names == ["0.weight", "2.weight"]
    for layer in result.layers:
        # PyTorch's uniform init is i.i.d.: MP holds (KS distance ≤ 0.08 at 64–100 eigenvalues).
        assert layer.mp_ks < 0.08 and layer.above_edge < 0.05
        assert not layer.fit.credible
    assert result.summary()["credible_layers"] == 0 and len(result.warnings()) == 2
    # A percentile interval may exclude the point estimate; the α figure must still draw.
    result.layers[0].fit.alpha_low = result.layers[0].fit.alpha + 1.0
    assert [f.slug for f in figures_of(result)] == ["esd", "alpha"]
