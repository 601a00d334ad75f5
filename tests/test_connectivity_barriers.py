"""Barrier definitions on synthetic curves whose barriers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from losslab.connectivity import DEFINITIONS, barrier, barriers
from losslab.errors import UserError


def bump(t: np.ndarray, a: float, b: float, h: float) -> np.ndarray:
    """A ramp from a to b plus a parabola of height h at t = ½: v(t) = (1−t)a + tb + 4h·t(1−t)."""
    return (1 - t) * a + t * b + 4 * h * t * (1 - t)


# Grids of 2^k + 1 points hold t = ½ and the analytic maxima below exactly.
T = np.linspace(0, 1, 65)


@pytest.mark.parametrize(("a", "b", "h"), [(1.0, 1.0, 0.5), (0.2, 1.4, 2.0), (3.0, 0.5, 1.0)])
def test_linear_definition_is_the_bump_height(a: float, b: float, h: float) -> None:
    result = barrier(T, bump(T, a, b, h), "linear")
    # v − ramp = 4h·t(1−t), largest at t = ½ with value h; float64 sums of O(1) terms.
    assert result.height == pytest.approx(h, abs=1e-12)
    assert result.t == 0.5


def test_mean_definition_matches_its_closed_form() -> None:
    # v − (a+b)/2 = (b−a)(t − ½) + 4h·t(1−t) has its maximum at t* = ½ + (b−a)/(8h),
    # with value h + (b−a)²/(16h). With a = 0, b = 1, h = 2: t* = 9/16 (on the grid),
    # value 2 + 1/32.
    result = barrier(T, bump(T, 0.0, 1.0, 2.0), "mean")
    assert result.t == 9 / 16
    assert result.height == pytest.approx(2 + 1 / 32, abs=1e-12)


def test_max_endpoint_definition_subtracts_the_worse_endpoint() -> None:
    # max over t of v − max(a, b): with a = 0, b = 1, h = 2 the maximum of v is at t* = 9/16
    # with value (b−a)t* + 4h t*(1−t*) + a = 9/16 + 8·63/256, minus b = 1.
    result = barrier(T, bump(T, 0.0, 1.0, 2.0), "max_endpoint")
    expected = 9 / 16 + 8 * 9 / 16 * 7 / 16 - 1.0
    assert result.height == pytest.approx(expected, abs=1e-12)
    assert result.t == 9 / 16


def test_monotone_curve_has_no_barrier_but_mean_definition_counts_the_gap() -> None:
    v = 1.0 + 2.0 * T**2  # convex from 1 to 3: below the chord everywhere
    heights = {d: b.height for d, b in barriers(T, v).items()}
    assert heights["linear"] == 0.0  # the largest excess sits at an endpoint, where it is exactly 0
    assert heights["max_endpoint"] == 0.0
    assert heights["mean"] == pytest.approx(1.0, abs=1e-12)  # v(1) − mean(v(0), v(1)) = 3 − 2


def test_every_definition_is_non_negative_on_random_curves() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.normal(size=len(T))
        assert all(b.height >= 0 for b in barriers(T, v).values())


def test_non_finite_values_give_no_false_number() -> None:
    v = bump(T, 0.0, 0.0, 1.0)
    v[10] = math.inf
    assert barrier(T, v).height == math.inf
    v[10] = math.nan
    assert math.isnan(barrier(T, v).height)


@pytest.mark.parametrize(
    ("t", "v", "message"),
    [
        ([0.0], [1.0], "length ≥ 2"),
        ([0.0, 0.5], [1.0, 2.0], "from 0 to 1"),
        ([0.0, 0.7, 0.3, 1.0], [1.0, 2.0, 3.0, 4.0], "from 0 to 1"),
        ([0.0, 1.0], [1.0, 2.0, 3.0], "same length"),
    ],
)
def test_bad_positions_are_user_errors(t: list[float], v: list[float], message: str) -> None:
    with pytest.raises(UserError, match=message):
        barrier(t, v)


def test_unknown_definition_names_the_choices() -> None:
    with pytest.raises(UserError, match="'definition' parameter of barrier must be one of"):
        barrier(T, T, "sup")
    assert set(DEFINITIONS) == {"linear", "mean", "max_endpoint"}
