"""Minimum-error training of the 3-node network: the least errors any network makes, with a certified gap.

Training the Blum–Rivest network to zero errors is NP-complete (Blum & Rivest 1992), and
finding the network with the fewest errors is at least as hard; for one threshold unit
even approximating the minimum is hard (Johnson & Preparata 1978; Amaldi & Kann 1995),
and Judd (1988) showed loading is hard for fixed architectures. The MILP of
`losslab.exact.three_node` with one binary e_k per point (e_k = 1 switches point k's
constraints off) minimizes Σ e_k. HiGHS returns an incumbent and a proven dual bound;
errors are integers, so

    lower = ⌈dual bound − 1e-6⌉ ≤ min errors ≤ errors of the incumbent network,

and the gap is their difference (0: certified optimal). The incumbent is re-solved as
two LPs with its binaries fixed and its errors counted by evaluating the network on
every point, so the upper end is a real network's count. The lower end is exact for
weights in [−M, M]; with the Cramer–Hadamard M of `losslab.exact.threshold` (0/1 data,
big-M within `MAX_BIG_M`) it covers every network (``exact``); above that it covers
bounded weights only and the result says so.

Instances with planted label noise (`noisy_points`): the points of a solvable
set-splitting instance with k labels flipped. The planted splitting's network then
makes exactly k errors, so min errors ≤ k — a check every solve must pass. The 3-node
network absorbs most such flips on these points (the minimum stays 0 or 1: a unit with
w = 1, b = −1.5 rejects the origin and every e_i and accepts every subset of ≥ 2 elements,
so giving up the origin alone fits any clean instance), so `teacher_points` offers a
family where noise costs: random points of {0, 1}^n labelled by a random 3-node teacher,
k labels flipped (again min errors ≤ k).

`brute_force_min_errors` is the slow obvious reference: every labelling of the points
one threshold unit realizes (a depth-first search over the points, one feasibility LP
per partial labelling, pruned where infeasible), then every pair of them through the AND.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linprog, nnls

from losslab.data.set_splitting import SetSplittingInstance
from losslab.errors import UserError, check_float, check_int
from losslab.exact.solver import SolverError, solve_milp_bounded
from losslab.exact.three_node import ThreeNodeMilp, and_outputs
from losslab.exact.threshold import binary_labels, resolve_weight_bound
from losslab.store import register_result

__all__ = [
    "BRUTE_FORCE_POINTS",
    "MinErrorResult",
    "brute_force_min_errors",
    "min_errors",
    "noisy_points",
    "teacher_points",
]

BRUTE_FORCE_POINTS = 14  # the reference enumerates unit labellings: a few thousand LPs at 14 points


@register_result
@dataclass
class MinErrorResult:
    """The fewest errors of the 3-node network on (X, y), or bounds on it.

    ``errors`` is counted by evaluating the returned network (``W`` [2, d], ``b`` [2]) and
    ``misclassified`` [n] marks its wrong points; ``lower_bound`` is proven; ``gap`` =
    errors − lower_bound. ``certified`` means gap 0 and a bound that covers all weights
    (``exact``, or zero errors); otherwise ``reason`` says why not.
    """

    errors: int
    lower_bound: int
    gap: int
    certified: bool
    status: str
    misclassified: np.ndarray
    W: np.ndarray
    b: np.ndarray
    weight_bound: float
    exact: bool
    note: str
    reason: str
    nodes: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "errors": self.errors,
            "lower_bound": self.lower_bound,
            "gap": self.gap,
            "certified": self.certified,
            "status": self.status,
            "exact": self.exact,
            "nodes": self.nodes,
            "seconds": round(self.seconds, 4),
        }
        if not self.certified:
            out["reason"] = self.reason
        return out


def noisy_points(
    instance: SetSplittingInstance, flips: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Blum–Rivest points of ``instance`` with ``flips`` labels flipped: (X, y, flipped indices).

    The flipped points are a seeded uniform choice among all 1 + n + m points.
    """
    X, y = instance.points()
    check_int(flips, "flips", "noisy_points", low=0, high=len(y))
    flipped = np.sort(
        np.random.default_rng([seed, instance.elements, instance.subset_count, flips]).choice(
            len(y), flips, replace=False
        )
    )
    y = y.copy()
    y[flipped] = 1 - y[flipped]
    return X, y, flipped


def teacher_points(dims: int, points: int, flips: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random points of {0, 1}^dims labelled by a random 3-node network, ``flips`` labels flipped.

    The teacher's units have Gaussian weights and the bias that puts half of the points on
    each side, so about a quarter are positive; the teacher then makes exactly ``flips``
    errors, which bounds the minimum from above. Returns (X, y, flipped indices).
    """
    check_int(dims, "dims", "teacher_points", low=1)
    check_int(points, "points", "teacher_points", low=1)
    check_int(flips, "flips", "teacher_points", low=0, high=points)
    rng = np.random.default_rng([seed, dims, points, flips, 3])
    X = rng.integers(0, 2, (points, dims)).astype(np.float64)
    W = rng.standard_normal((2, dims))
    # The bias halfway between the two middle projections: each unit accepts about half the points.
    scores = np.sort(X @ W.T, axis=0)
    middle = points // 2
    b = -0.5 * (scores[max(middle - 1, 0)] + scores[middle]) if points > 1 else -scores[0] + 0.5
    y = and_outputs(X, W, b).astype(np.int64)
    flipped = np.sort(rng.choice(points, flips, replace=False))
    y[flipped] = 1 - y[flipped]
    return X, y, flipped


def min_errors(
    X: np.ndarray, y: np.ndarray, *, weight_bound: float | str = "auto", time_limit: float = 60.0
) -> MinErrorResult:
    """The fewest errors of the 3-node AND network on (X, y), with a certified gap (module docstring).

    A stop at ``time_limit`` is not an error: the result holds the best network found and
    the proven lower bound. Raises `SolverError` only if HiGHS found no network at all.
    """
    X = np.asarray(X, dtype=np.float64)
    y = binary_labels(y, "min_errors")
    check_float(time_limit, "time_limit", "min_errors", low=0.0, low_open=True)
    if X.ndim != 2 or len(X) != len(y) or len(y) == 0:
        raise UserError(f"min_errors needs inputs X [n, d] and labels y [n]. Got {X.shape} and {y.shape}.")
    M, exact, note = resolve_weight_bound(X, weight_bound)
    program = ThreeNodeMilp(X, y, M, fewest=True)
    what = f"the 3-node fewest-errors MILP ({len(y)} points in {X.shape[1]} dimensions)"
    outcome = solve_milp_bounded(*program.arrays(), time_limit=time_limit, what=what)
    if outcome.x is None:
        raise SolverError(
            f"HiGHS found no network for {what} within time_limit={time_limit:g} s ({outcome.status}): "
            "raise the time limit.",
            status=outcome.status,
            seconds=outcome.seconds,
        )
    W, b = program.network(outcome.x, "fewest-errors")
    misclassified = and_outputs(X, W, b) != (y == 1)
    errors = int(misclassified.sum())
    if errors > round(outcome.objective or 0):
        raise SolverError(
            f"The fewest-errors solution misclassifies {errors} points when evaluated, "
            f"not the {outcome.objective:g} HiGHS reported.",
            status="unverified",
        )
    # Errors are integers: the dual bound rounds up (1e-6 absorbs HiGHS's feasibility tolerance).
    dual = outcome.dual_bound if outcome.dual_bound is not None else 0.0
    lower = min(errors, max(0, math.ceil(dual - 1e-6)))
    gap = errors - lower
    # A network with no errors is optimal whatever the weight bound: 0 is a lower bound for all weights.
    covers_all = exact or errors == 0
    reasons = []
    if gap:
        reasons.append(f"HiGHS stopped at time_limit={time_limit:g} s with {lower} ≤ min errors ≤ {errors}")
    if not covers_all:
        reasons.append(f"the lower bound holds for weights in [−{M:.6g}, {M:.6g}] only ({note})")
    return MinErrorResult(
        errors,
        lower,
        gap,
        gap == 0 and covers_all,
        outcome.status,
        misclassified,
        W,
        b,
        M,
        exact,
        note,
        "; ".join(reasons),
        outcome.nodes,
        outcome.seconds,
    )


def _realizable(X: np.ndarray) -> np.ndarray:
    """Every labelling of the rows of X that one threshold unit realizes, bool [L, n].

    Depth-first over the points: a partial labelling is extended only while some unit
    still separates it (an LP feasibility check with margin 1, which rescaling makes
    harmless).
    """
    n = len(X)
    Xt = np.c_[X, np.ones(n)]
    found: list[np.ndarray] = []

    def solve(labels: list[bool]) -> np.ndarray | None:
        s = np.where(labels, 1.0, -1.0)
        return _separating(s[:, None] * Xt[: len(labels)])

    def extend(labels: list[bool], z: np.ndarray) -> None:
        k = len(labels)
        if k == n:
            found.append(np.array(labels))
            return
        # The unit z that separates the prefix already puts point k on one side (after scaling
        # z so every margin, including this point's, is at least 1 when it is not on the
        # boundary); only the other side needs an LP.
        side = bool(Xt[k] @ z > 0)
        margin = abs(float(Xt[k] @ z))
        for value in (side, not side):
            trial = [*labels, value]
            if value == side and margin > 0:
                extend(trial, z / min(1.0, margin))
            else:
                other = solve(trial)
                if other is not None:
                    extend(trial, other)

    start = solve([])
    extend([], start if start is not None else np.zeros(Xt.shape[1]))
    return np.array(found)


def _separating(A: np.ndarray) -> np.ndarray | None:
    """Some z with A z ≥ 1, or None when there is none.

    Gordan's alternative through non-negative least squares (fast on these tiny systems):
    λ* = argmin_{λ≥0} ‖Bλ − e‖ with B = [Aᵀ; 1ᵀ], e = (0, …, 0, 1). Its residual ρ = e − Bλ*
    satisfies Bᵀρ ≤ 0 and ρ_last = ‖ρ‖², so z = −ρ_{:−1}/‖ρ‖² has A z ≥ 1 whenever ρ ≠ 0;
    ρ = 0 is a convex combination of the rows at 0, a proof that no z exists. Round-off
    cases (ρ tiny but z failing the check) go to an LP.
    """
    if len(A) == 0:
        return np.zeros(A.shape[1])
    B = np.r_[A.T, np.ones((1, len(A)))]
    e = np.r_[np.zeros(A.shape[1]), 1.0]
    lam, _ = nnls(B, e)
    rho = e - B @ lam
    size = float(rho @ rho)
    if size > 1e-12:
        z = -rho[:-1] / size
        if (A @ z >= 1 - 1e-9).all():
            return z / min(1.0, float((A @ z).min()))
    elif size < 1e-20:
        return None
    lp = linprog(
        np.zeros(A.shape[1]), A_ub=-A, b_ub=-np.ones(len(A)), bounds=[(None, None)] * A.shape[1], method="highs"
    )
    return lp.x if lp.status == 0 else None


def brute_force_min_errors(X: np.ndarray, y: np.ndarray) -> int:
    """The fewest errors of the 3-node network by enumeration (≤ `BRUTE_FORCE_POINTS` points)."""
    X = np.asarray(X, dtype=np.float64)
    y = binary_labels(y, "brute_force_min_errors")
    check_int(len(y), "number of points", "brute_force_min_errors", low=1, high=BRUTE_FORCE_POINTS)
    units = _realizable(X)
    truth = y == 1
    # errors of (A AND B) for every pair: [L, L] through one bool contraction per point
    outputs = units[:, None, :] & units[None, :, :]
    return int((outputs != truth).sum(2).min())
