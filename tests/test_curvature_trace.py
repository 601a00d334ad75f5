"""Trace estimators: fixed budgets, bounds that hold for every seed in a fixed set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from losslab.curvature import (
    as_operator,
    auto_trace,
    ggn_operator,
    hessian_operator,
    hutchinson,
    hutchpp,
    xtrace,
)
from losslab.curvature.trace import _leave_one_out, _left_by_sketch, _orthonormal_rows, _rademacher
from losslab.errors import UserError
from losslab.objective import Objective

pytestmark = pytest.mark.usefixtures("one_thread")


SEEDS = range(10)
ESTIMATORS = {"hutchinson": hutchinson, "hutchpp": hutchpp, "xtrace": xtrace, "auto": auto_trace}


@pytest.fixture(scope="module")
def rotation() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(600, 600, generator=g, dtype=torch.float64))
    return Q


def _matrix(rotation: torch.Tensor, eigenvalues: torch.Tensor) -> torch.Tensor:
    return (rotation * eigenvalues) @ rotation.T


def _spectra(d: int) -> dict[str, torch.Tensor]:
    k = torch.arange(1, d + 1, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    return {
        "decay": 1.0 / k**2,  # fast decay: the sketch catches almost all of the trace
        "outliers+bulk": torch.cat(
            [
                torch.tensor([50.0, 30.0, 20.0], dtype=torch.float64),
                torch.rand(d - 3, generator=g, dtype=torch.float64),
            ]
        ),
        "indefinite": torch.cat(
            [
                torch.tensor([20.0, 10.0, -3.0], dtype=torch.float64),
                0.1 * torch.randn(d - 3, generator=g, dtype=torch.float64),
            ]
        ),
        # No eigenvalue dominates ‖A‖_F (a trained ResNet's Hessian, RESULTS.md): a sketch removes little.
        "flat": 0.5 + torch.rand(d, generator=g, dtype=torch.float64),
    }


@pytest.mark.parametrize("spectrum", ["decay", "outliers+bulk", "indefinite", "flat"])
@pytest.mark.parametrize("method", list(ESTIMATORS))
def test_error_estimates_cover_the_error(rotation, spectrum, method):
    """With 120 products, |estimate − tr A| ≤ 4.5 error estimates for every seed in the set, and the
    error estimates are neither inflated nor deflated on average (RMS z-score in [0.4, 2]). Measured
    over 40 seeds: max |z| ≤ 3.3 and RMS z 0.85–1.21 for all four methods on these four spectra."""
    A = _matrix(rotation, _spectra(600)[spectrum])
    exact = float(A.trace())
    z = []
    for seed in SEEDS:
        est = ESTIMATORS[method](A, tol=1e-12, max_hvps=120, seed=seed)
        assert est.hvps <= 120 and not est.converged
        z.append((est.estimate - exact) / est.stderr)
    z = np.asarray(z)
    assert np.abs(z).max() <= 4.5
    assert 0.4 <= math.sqrt((z**2).mean()) <= 2.0


def test_hutchinson_error_matches_theory(rotation):
    """Var(zᵀAz) = 2 Σ_{i≠j} A_ij² for Rademacher z (Hutchinson 1989): every seed within 4 σ/√N."""
    A = _matrix(rotation, _spectra(600)["outliers+bulk"])
    sigma = math.sqrt(2 * (float(A.square().sum()) - float(A.diagonal().square().sum())))
    for seed in SEEDS:
        est = hutchinson(A, tol=1e-12, max_hvps=100, seed=seed)
        assert est.samples == 100
        assert abs(est.estimate - float(A.trace())) <= 4 * sigma / 10
        assert 0.5 * sigma / 10 <= est.stderr <= 1.5 * sigma / 10  # the sample std is near the truth


def test_sketching_beats_hutchinson_on_decaying_spectra(rotation):
    """On 1/k² eigenvalues the low-rank part holds nearly the whole trace: Hutch++ and XTrace stay
    within 0.5 % for every seed and are more than ten times as accurate as Hutchinson on average
    over the seeds (measured at d = 1,000 and 200 products: ~100× for Hutch++, ~600× for XTrace)."""
    A = _matrix(rotation, _spectra(600)["decay"])
    exact = float(A.trace())
    errors: dict[str, list[float]] = {name: [] for name in ESTIMATORS}
    for seed in SEEDS:
        for name, fn in ESTIMATORS.items():
            errors[name].append(abs(fn(A, tol=1e-12, max_hvps=120, seed=seed).estimate - exact) / exact)
    assert max(errors["hutchpp"]) <= 5e-3 and max(errors["xtrace"]) <= 5e-3 and max(errors["auto"]) <= 5e-3
    for name in ("hutchpp", "xtrace", "auto"):
        assert np.mean(errors[name]) * 10 <= np.mean(errors["hutchinson"])


@pytest.mark.parametrize("method", list(ESTIMATORS))
def test_stopping_rule_is_on_the_error_estimate(rotation, method):
    A = _matrix(rotation, _spectra(600)["outliers+bulk"])
    est = ESTIMATORS[method](A, tol=2e-2, max_hvps=2000, seed=3)
    assert est.converged
    assert est.stderr <= 2e-2 * abs(est.estimate)
    assert est.samples >= 10
    # It stopped at the first check that met the rule, not later.
    earlier = est.history_stderr[:-1] > 2e-2 * np.abs(est.history_estimate[:-1])
    assert earlier.all()
    assert abs(est.estimate - float(A.trace())) <= 4.5 * est.stderr
    assert list(est.history_hvps) == sorted(est.history_hvps)


def test_auto_takes_hutchpp_where_the_sketch_pays_and_hutchinson_where_it_does_not(rotation):
    """Where a few eigenvalues hold ‖A‖²_F, `auto_trace` is Hutch++ itself (same seed, same sketch,
    the same numbers); on a flat spectrum it is Hutchinson, whose products it matches on average
    over the seeds (within 15 %: the probes differ) where Hutch++ spends its 40-product sketch for
    nothing (measured, mean over the 10 seeds at tol 2e-3: Hutchinson 69, auto 69, Hutch++ 128 products)."""
    A = _matrix(rotation, _spectra(600)["outliers+bulk"])
    for seed in SEEDS:
        auto, sketched = auto_trace(A, tol=2e-2, seed=seed), hutchpp(A, tol=2e-2, seed=seed)
        assert auto.method == "hutchpp" and "→ hutchpp" in auto.choice
        assert (auto.estimate, auto.stderr, auto.hvps) == (sketched.estimate, sketched.stderr, sketched.hvps)
    A = _matrix(rotation, _spectra(600)["flat"])
    exact = float(A.trace())
    spent: dict[str, list[int]] = {"auto": [], "hutchinson": [], "hutchpp": []}
    for seed in SEEDS:
        for name in spent:
            est = ESTIMATORS[name](A, tol=2e-3, seed=seed)
            assert est.converged and abs(est.estimate - exact) <= 4.5 * est.stderr
            spent[name].append(est.hvps)
            if name == "auto":
                assert est.method == "hutchinson" and "→ hutchinson" in est.choice
                assert est.history_hvps[0] == 20  # the sketch's images were its first samples
    assert np.mean(spent["auto"]) <= 1.15 * np.mean(spent["hutchinson"])
    assert np.mean(spent["auto"]) + 20 <= np.mean(spent["hutchpp"])


def test_blocks_shrink_to_what_the_error_estimate_still_needs(rotation):
    """Whole blocks of 10 overshoot the first N that meets the rule by up to 9 probes. Sized by the
    error estimate, Hutchinson stops near that N, on a prefix of the seed's probe stream, so its
    estimate is the mean of its first samples (measured on the flat spectrum at tol 2e-3 over the
    10 seeds: 69 products on average, against 72 in whole blocks and 65 checking every probe)."""
    A = _matrix(rotation, _spectra(600)["flat"])
    spent, whole, every = [], [], []
    for seed in SEEDS:
        est = hutchinson(A, tol=2e-3, seed=seed, max_hvps=2000)
        Z = _rademacher(2000, 600, torch.Generator().manual_seed(seed), torch.device("cpu"))
        samples = (Z * (Z @ A)).sum(1)

        def meets(n: int, samples: torch.Tensor = samples) -> bool:
            head = samples[:n]
            return float(head.std(correction=1)) / math.sqrt(n) <= 2e-3 * abs(float(head.mean()))

        assert est.converged and est.estimate == pytest.approx(float(samples[: est.hvps].mean()), rel=1e-12)
        first = next(n for n in range(10, 2001) if meets(n))
        assert meets(est.hvps) and est.hvps >= first
        spent.append(est.hvps)
        whole.append(next(n for n in range(10, 2001, 10) if meets(n)))
        every.append(first)
    assert np.mean(spent) < np.mean(whole)  # whole blocks: 72
    assert max(np.subtract(spent, every)) <= 15  # measured ≤ 13


def test_the_fraction_left_by_a_sketch_matches_the_obvious_loop(rotation):
    """`_left_by_sketch` against a fresh QR of the images without row i, and, on average over many
    sketches, against the fraction ‖(I − QQᵀ)A‖²_F / ‖A‖²_F a rank-(s−1) sketch leaves (within 10 %)."""
    g = torch.Generator().manual_seed(6)
    A = _matrix(rotation, _spectra(600)["outliers+bulk"])
    S = _rademacher(8, 600, g, torch.device("cpu"))
    Y = S @ A
    eye = torch.eye(600, dtype=torch.float64)
    left = []
    for i in range(8):
        Qi, _ = torch.linalg.qr(torch.cat([Y[:i], Y[i + 1 :]]).T)
        left.append(float(((eye - Qi @ Qi.T) @ Y[i]).square().sum()))
    slow = np.mean(left) / float(Y.square().sum(1).mean())
    assert _left_by_sketch(Y, torch.linalg.qr(Y.T)[1]) == pytest.approx(slow, rel=1e-9)
    estimates, truths = [], []
    for _ in range(30):
        Y = _rademacher(8, 600, g, torch.device("cpu")) @ A
        estimates.append(_left_by_sketch(Y, torch.linalg.qr(Y.T)[1]))
        Q, _ = torch.linalg.qr(Y[:7].T)
        truths.append(float(((eye - Q @ Q.T) @ A).square().sum() / A.square().sum()))
    assert np.mean(estimates) == pytest.approx(np.mean(truths), rel=0.1)
    B = torch.randn(600, 3, generator=g, dtype=torch.float64)
    Y = _rademacher(5, 600, g, torch.device("cpu")) @ (B @ B.T)
    assert _left_by_sketch(Y, torch.linalg.qr(Y.T)[1]) == 0.0  # range(A) caught


def test_low_rank_operators_are_exact():
    g = torch.Generator().manual_seed(4)
    B = torch.randn(300, 7, generator=g, dtype=torch.float64)
    A = B @ B.T
    exact = float(A.trace())
    sketched = hutchpp(A, rank=10, seed=0)
    assert sketched.converged
    assert abs(sketched.estimate - exact) <= 1e-10 * exact and sketched.stderr <= 1e-10 * exact
    exchangeable = xtrace(A, block=5, seed=0)  # the second block of images lies in the first's span
    assert exchangeable.converged and exchangeable.stderr == 0.0
    assert abs(exchangeable.estimate - exact) <= 1e-10 * exact


def test_xtrace_leave_one_out_matches_the_obvious_loop():
    """Each tᵢ against Q₍ᵢ₎ built by a fresh QR of the images without column i."""
    g = torch.Generator().manual_seed(5)
    d, s = 40, 6
    M = torch.randn(d, d, generator=g, dtype=torch.float64)
    A = M @ M.T / d + torch.diag(torch.linspace(-1.0, 3.0, d, dtype=torch.float64))
    Omega = _rademacher(s, d, g, torch.device("cpu"))
    Y = Omega @ A
    Q, _, R = _orthonormal_rows(Y, torch.zeros(0, d, dtype=torch.float64))
    fast = _leave_one_out(Omega, Y, Q, Q @ A, R)
    eye = torch.eye(d, dtype=torch.float64)
    for i in range(s):
        Qi, _ = torch.linalg.qr(torch.cat([Y[:i], Y[i + 1 :]]).T)
        P = eye - Qi @ Qi.T
        slow = (Qi.T @ A @ Qi).trace() + Omega[i] @ P @ A @ P @ Omega[i]
        assert abs(float(fast[i]) - float(slow)) <= 1e-10 * float(A.abs().sum())


def test_group_traces_partition_the_trace(rotation):
    A = _matrix(rotation, _spectra(600)["outliers+bulk"])
    groups = {"a": slice(0, 100), "b": slice(100, 450), "c": slice(450, 600)}
    est = hutchinson(A, tol=1e-12, max_hvps=200, seed=2, groups=groups)
    assert sum(v[0] for v in est.groups.values()) == pytest.approx(est.estimate, rel=1e-12)
    for name, where in groups.items():
        value, stderr = est.groups[name]
        assert abs(value - float(A[where, where].trace())) <= 4.5 * stderr


def test_tiny_model_traces(tiny_case):
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    # The GGN's products are ~20× slower than the Hessian's: check it on the smallest case only.
    op = (ggn_operator if tiny_case.name == "mlp-tanh-mse" else hessian_operator)(obj)
    exact = float(op.dense().trace())
    for seed, method in enumerate(ESTIMATORS.values()):
        est = method(op, tol=1e-12, max_hvps=30, seed=seed)
        assert abs(est.estimate - exact) <= 4.5 * est.stderr + 1e-9 * abs(exact)


def test_bad_arguments():
    A = as_operator(torch.eye(5, dtype=torch.float64))
    with pytest.raises(UserError, match="'tol' parameter"):
        hutchinson(A, tol=0.0)
    with pytest.raises(UserError, match="'min_samples' parameter"):
        xtrace(A, min_samples=1)
    with pytest.raises(UserError, match="'rank' parameter"):
        hutchpp(A, rank=0)
    with pytest.raises(UserError, match="'rank' parameter of auto_trace"):
        auto_trace(A, rank=1)
