"""Activation patterns: exact enumeration against closed-form counts and brute force by LP."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from losslab.errors import UserError
from losslab.exact import activation_patterns, pattern_count_bound, sample_patterns


def _with_bias(X: np.ndarray) -> np.ndarray:
    return np.c_[X, np.ones(len(X))]


def _brute_force(X: np.ndarray) -> set[bytes]:
    """Every sign vector s ∈ {±1}^n that sign(X u) realizes: one LP (s_k x_k·u ≥ 1) per vector."""
    found = set()
    for signs in itertools.product((-1.0, 1.0), repeat=len(X)):
        s = np.array(signs)
        lp = linprog(
            np.zeros(X.shape[1]),
            A_ub=-(s[:, None] * X),
            b_ub=-np.ones(len(X)),
            bounds=[(None, None)] * X.shape[1],
            method="highs",
        )
        if lp.status == 0:
            found.add(np.packbits(s > 0).tobytes())
    return found


def _as_set(patterns: np.ndarray) -> set[bytes]:
    return {np.packbits(p).tobytes() for p in patterns}


def _flip_facets(patterns: np.ndarray) -> np.ndarray:
    """Row k is a facet of cell i iff flipping bit k alone gives another cell (slow definition)."""
    cells = _as_set(patterns)
    facets = np.zeros_like(patterns)
    for i, p in enumerate(patterns):
        for k in range(patterns.shape[1]):
            q = p.copy()
            q[k] = ~q[k]
            facets[i, k] = np.packbits(q).tobytes() in cells
    return facets


@pytest.mark.parametrize(("n", "d"), [(6, 1), (9, 2), (12, 3), (40, 2), (30, 3)])
def test_general_position_count_is_covers_formula(n: int, d: int) -> None:
    # Gaussian points are in general position with probability 1, where Cover's count is exact.
    X = _with_bias(np.random.default_rng(n + d).standard_normal((n, d)))
    patterns = activation_patterns(X)
    assert len(patterns) == pattern_count_bound(n, d + 1)
    assert len(_as_set(patterns)) == len(patterns)  # distinct


DEGENERATE = {
    "grid-3x3": np.array([[i, j] for i in range(3) for j in range(3)], dtype=float),
    "collinear": np.array([[0, 0], [1, 1], [2, 2], [0, 1], [3, 0.5]], dtype=float),
    "duplicates": np.array([[0, 0], [0, 0], [1, 0], [0, 1], [1, 1], [1, 1]], dtype=float),
    "cube": np.array(list(itertools.product((0.0, 1.0), repeat=3))),
    "random-2d": np.random.default_rng(5).standard_normal((7, 2)),
}


@pytest.mark.parametrize("name", list(DEGENERATE))
def test_patterns_match_brute_force_lp(name: str) -> None:
    X = _with_bias(DEGENERATE[name])
    assert _as_set(activation_patterns(X)) == _brute_force(X)


@pytest.mark.parametrize("name", list(DEGENERATE))
def test_facets_match_the_flip_definition(name: str) -> None:
    X = np.unique(_with_bias(DEGENERATE[name]), axis=0)  # distinct hyperplanes, as relu2 uses them
    patterns, facets = activation_patterns(X, facets=True)
    np.testing.assert_array_equal(facets, _flip_facets(patterns))


def test_sampled_patterns_are_a_subset() -> None:
    X = _with_bias(np.random.default_rng(0).standard_normal((25, 2)))
    every = _as_set(activation_patterns(X))
    sampled = sample_patterns(X, 500, seed=3)
    assert _as_set(sampled) <= every
    assert len(_as_set(sampled)) == len(sampled)
    # Gaussian draws find the cells in proportion to their solid angle; some cells of
    # 8 points (58 in all) are thin enough (~1e-6) to be missed, so ask for 90 % per seed.
    small = X[:8]
    cells = len(activation_patterns(small))
    for seed in range(5):
        assert len(sample_patterns(small, 100_000, seed=seed)) >= 0.9 * cells


def test_refuses_too_many_patterns_with_the_count() -> None:
    X = _with_bias(np.random.default_rng(0).standard_normal((200, 5)))
    with pytest.raises(UserError, match=r"up to [\d,]+ activation patterns.*sampled:N"):
        activation_patterns(X, max_patterns=10_000)


def test_zero_row_is_refused() -> None:
    with pytest.raises(UserError, match="bias column"):
        activation_patterns(np.array([[0.0, 0.0], [1.0, 2.0]]))
