"""Minimum-error training of the 3-node network: MILP vs brute force, the certified gap, planted noise."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

import losslab.exact.solver as solver_module
from losslab.data import set_splitting_instance
from losslab.exact import and_outputs, brute_force_min_errors, min_errors, noisy_points, teacher_points
from losslab.exact.min_error import _realizable


def _plain_units(X: np.ndarray) -> set[tuple[bool, ...]]:
    """Every labelling one unit realizes: one LP per labelling, all 2^N of them (the slowest obvious way)."""
    Xt = np.c_[X, np.ones(len(X))]
    out = set()
    for labels in itertools.product((False, True), repeat=len(X)):
        s = np.where(labels, 1.0, -1.0)
        lp = linprog(
            np.zeros(Xt.shape[1]),
            A_ub=-(s[:, None] * Xt),
            b_ub=-np.ones(len(X)),
            bounds=[(None, None)] * Xt.shape[1],
            method="highs",
        )
        if lp.status == 0:
            out.add(labels)
    return out


def _cube_data(seed: int, n: int = 9, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Random points of {0,1}^d (repeats allowed, so some labels conflict) with random labels."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, (n, d)).astype(float), rng.integers(0, 2, n)


@pytest.mark.parametrize("seed", range(3))
def test_the_unit_enumeration_is_every_realizable_labelling(seed: int) -> None:
    X, _ = _cube_data(seed, n=7)
    assert {tuple(r) for r in _realizable(X)} == _plain_units(X)


@pytest.mark.parametrize("seed", range(8))
def test_min_errors_equals_brute_force_on_random_cube_data(seed: int) -> None:
    X, y = _cube_data(seed, n=10)
    fit = min_errors(X, y)
    assert fit.certified and fit.exact and fit.gap == 0 and fit.status == "optimal"
    assert fit.errors == brute_force_min_errors(X, y)
    assert int((and_outputs(X, fit.W, fit.b) != (y == 1)).sum()) == fit.errors  # a real network's count
    np.testing.assert_array_equal(fit.misclassified, and_outputs(X, fit.W, fit.b) != (y == 1))


def test_the_cases_above_are_not_all_trivial() -> None:
    optima = [min_errors(*_cube_data(seed, n=10)).errors for seed in range(8)]
    assert max(optima) >= 2 and min(optima) <= 1


@pytest.mark.parametrize(
    ("n", "m", "kind", "flips"), [(5, 8, "solvable", 3), (5, 6, "unsolvable", 0), (4, 4, "random", 2)]
)
def test_noisy_set_splitting_points_agree_with_brute_force(n: int, m: int, kind: str, flips: int) -> None:
    instance = set_splitting_instance(n, m, seed=1, kind=kind)
    X, y, flipped = noisy_points(instance, flips, seed=1)
    clean = instance.points()[1]
    assert len(flipped) == flips and (y != clean).sum() == flips and (y[flipped] != clean[flipped]).all()
    fit = min_errors(X, y)
    assert fit.certified and fit.errors == brute_force_min_errors(X, y)
    if kind == "solvable":
        assert fit.errors <= flips  # the planted network makes exactly `flips` errors
    if kind == "unsolvable" and flips == 0:
        assert fit.errors >= 1  # no splitting: no consistent network (Blum–Rivest)


def test_a_time_limit_leaves_a_certified_gap_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _cube_data(3, n=10)
    optimum = min_errors(X, y).errors
    assert optimum >= 2
    real = solver_module.milp

    def stopped(*args, **kwargs):
        result = real(*args, **kwargs)
        result.status, result.mip_dual_bound = 1, result.fun - 1.5  # as HiGHS at a time limit: a weaker bound
        return result

    monkeypatch.setattr(solver_module, "milp", stopped)
    fit = min_errors(X, y, time_limit=3)
    assert fit.status == "time_limit" and not fit.certified
    assert fit.errors == optimum and fit.lower_bound == optimum - 1 and fit.gap == 1
    assert "time_limit=3 s" in fit.reason and fit.summary()["reason"] == fit.reason


def test_a_bounded_weight_answer_says_so() -> None:
    X, y = _cube_data(3, n=10)
    fit = min_errors(X, y, weight_bound=1.0)  # below the proven bound: only weights in [−1, 1] are covered
    assert not fit.exact and fit.errors >= min_errors(X, y).errors
    assert not fit.certified and "weights in [−1, 1] only" in fit.reason


def test_zero_errors_is_certified_whatever_the_weight_bound() -> None:
    instance = set_splitting_instance(6, 8, seed=0, kind="solvable")
    X, y = instance.points()
    fit = min_errors(X, y, weight_bound=100.0)
    assert fit.errors == 0 and fit.certified


@pytest.mark.parametrize("seed", range(4))
def test_teacher_points_bound_the_optimum_and_agree_with_brute_force(seed: int) -> None:
    X, y, flipped = teacher_points(4, 13, 3, seed=seed)
    assert X.shape == (13, 4) and set(np.unique(X)) <= {0.0, 1.0} and len(flipped) == 3
    fit = min_errors(X, y)
    assert fit.certified and fit.errors <= 3 and fit.errors == brute_force_min_errors(X, y)


# The README's min-error snippet, exactly as in notes/exact.md.
README_SNIPPET = """
from losslab.data import set_splitting_instance
from losslab.exact import min_errors, noisy_points, teacher_points

# Fewest errors of the 3-node network, with a certified gap (losslab study min-error does this per n)
X, y, flipped = noisy_points(set_splitting_instance(8, 12, seed=0, kind="solvable"), 4, seed=0)
print(min_errors(X, y).summary())  # 0 errors: the network absorbs the 4 flipped labels
X, y, flipped = teacher_points(6, 40, 8, seed=0)  # 40 points of {0,1}^6, a 3-node teacher, 8 labels flipped
result = min_errors(X, y, time_limit=30)
print(result.errors, result.lower_bound, result.certified)
"""


def test_readme_snippet_runs_as_is(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(README_SNIPPET, "<README>", "exec"), {})
    first, second = capsys.readouterr().out.strip().splitlines()
    assert "'errors': 0" in first and second.endswith("True")
