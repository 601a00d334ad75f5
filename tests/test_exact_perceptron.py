"""One threshold unit: separability LP, Gordan certificate and its exact check, fewest errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from losslab.data import set_splitting_instance
from losslab.errors import UserError
from losslab.exact import fewest_errors, perceptron, separate, weight_bound
from losslab.exact.perceptron import _check_exactly

XOR = (np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), np.array([0, 1, 1, 0]))


def test_xor_has_the_closed_form_certificate() -> None:
    result = perceptron(*XOR)
    assert not result.separable
    assert result.certificate_exact
    # (0,0) + (1,1) = (0,1) + (1,0): equal weight 1/4 on each point is the only certificate.
    np.testing.assert_allclose(result.certificate, 0.25, atol=1e-12)
    assert result.fewest is not None and result.fewest.errors == 1 and result.fewest.exact


def test_exact_check_rejects_a_wrong_certificate() -> None:
    X, y = XOR
    signed = (2.0 * y - 1)[:, None] * np.c_[X, np.ones(4)]
    assert _check_exactly(signed, np.full(4, 0.25))
    assert not _check_exactly(signed, np.array([0.5, 0.25, 0.25, 0.0]))  # support {0, 1, 2}: no solution ≥ 0
    # Floating-point noise on a true certificate's values does not fool it either way.
    assert _check_exactly(signed, np.array([0.25, 0.25 + 1e-17, 0.25, 0.25]))


@pytest.mark.parametrize("seed", range(4))
def test_separable_data_get_a_verified_max_margin_unit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    w0, b0 = rng.standard_normal(3), 0.3
    X = rng.standard_normal((40, 3))
    keep = np.abs(X @ w0 + b0) > 0.2  # a planted margin
    X = X[keep]
    y = (X @ w0 + b0 > 0).astype(int)
    result = separate(X, y)
    assert result.separable
    s = 2.0 * y - 1
    margins = s * (X @ result.w + result.b)
    assert margins.min() > 0
    assert np.abs(result.w).max() == pytest.approx(1.0)
    # Maximal: at least the planted unit's ℓ1 margin (LP optimality, HiGHS tolerance 1e-7).
    planted = (s * (X @ w0 + b0)).min() / np.abs(w0).max()
    assert result.margin >= planted - 1e-7
    assert result.margin == pytest.approx(margins.min(), rel=1e-9)


def _best_line_errors(X: np.ndarray, y: np.ndarray) -> int:
    """Fewest errors of a line in 2-D by brute force: an optimal line can be moved until it passes
    through two points (general position), which may then go to either side; or it misses all
    points."""
    s = 2 * y - 1
    best = min((s == 1).sum(), (s == -1).sum())
    for i, j in itertools.combinations(range(len(X)), 2):
        normal = np.array([X[j, 1] - X[i, 1], X[i, 0] - X[j, 0]])
        side = np.sign((X - X[i]) @ normal)
        others = np.ones(len(X), dtype=bool)
        others[[i, j]] = False
        for orientation in (1, -1):
            wrong = int((side[others] * orientation != s[others]).sum())
            best = min(best, wrong)  # x_i and x_j are put on their correct sides
    return best


@pytest.mark.parametrize("seed", range(5))
def test_fewest_errors_matches_brute_force_lines(seed: int) -> None:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((14, 2))
    y = (X[:, 0] + 0.8 * rng.standard_normal(14) > 0).astype(int)
    result = fewest_errors(X, y)
    assert result.errors == _best_line_errors(X, y)
    assert not result.exact  # real-valued data: exact only over the weight box, and it says so
    assert result.misclassified.sum() == result.errors


def _separable(X: np.ndarray, labels: np.ndarray) -> bool:
    if labels.min() == labels.max():
        return True
    s = 2.0 * labels - 1
    lp = linprog(
        np.zeros(X.shape[1] + 1),
        A_ub=-(s[:, None] * np.c_[X, np.ones(len(X))]),
        b_ub=-np.ones(len(X)),
        bounds=[(None, None)] * (X.shape[1] + 1),
        method="highs",
    )
    return lp.status == 0


def test_fewest_errors_on_parity_matches_enumerated_dichotomies() -> None:
    X = np.array(list(itertools.product((0.0, 1.0), repeat=3)))
    y = (X.sum(1) % 2).astype(int)  # 3-bit parity
    separable = [np.array(d) for d in itertools.product((0, 1), repeat=8) if _separable(X, np.array(d))]
    best = min(int((d != y).sum()) for d in separable)
    result = fewest_errors(X, y)
    assert result.exact and result.errors == best == 2


def test_set_splitting_points_are_never_separable_by_one_unit() -> None:
    # c = Σ_{i∈c} e_i gives c − Σ e_i + (|c| − 1)·origin = 0 with the labels (+, −, +):
    # a certificate.
    X, y = set_splitting_instance(6, 8, seed=2).points()
    result = separate(X, y)
    assert not result.separable and result.certificate_exact
    assert result.certificate_residual < 1e-12


def test_weight_bound_is_cramer_hadamard() -> None:
    assert weight_bound(XOR[0]) == pytest.approx(6.0)  # r = 3: 3 · 4^2 / 2^3
    assert weight_bound(np.r_[np.zeros((1, 4)), np.eye(4)]) == pytest.approx(3 * 6**3 / 2**5)  # r = 5
    assert weight_bound(np.eye(4)) == pytest.approx(3 * 5**2.5 / 2**4)  # r = 4: no origin, rank 4
    assert weight_bound(np.array([[0.5, 1.0]])) is None


def test_bad_labels_are_one_line_errors() -> None:
    with pytest.raises(UserError, match="binary labels 0/1"):
        separate(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(UserError, match="both labels"):
        separate(np.zeros((3, 2)), np.array([1, 1, 1]))
