"""Threshold units: labels, outputs, and the weight bound that makes margin-1 MILPs exact.

A threshold unit with weights w and bias b says + on x iff w·x + b > 0. On a finite
set of points, any unit that classifies a subset correctly does so with a positive
margin, and rescaling (w, b) changes nothing, so we may ask for margin 1:
s_k (w·x_k + b) ≥ 1 with s_k = ±1 the label. A MILP also needs the weights bounded.

The bound (Cramer's rule and Hadamard's inequality, as in Muroga's bound on the
weights of threshold functions, Muroga 1971). Write x̃ = (x, 1) and z = (w, b). If the
system s_k x̃_k · z ≥ 1 (k in some subset) is feasible, it has a minimal face
{z : x̃_k · z = s_k, k ∈ T}, and a point of it with all but r coordinates zero, where
r is the rank of the x̃_k, T restricted to r independent rows and r columns with a
nonsingular r×r submatrix B (Schrijver 1986, Thm 8.5). Cramer: z_j = det(B_j)/det(B),
with B_j equal to B with column j replaced by the signs s. For integer data
|det B| ≥ 1. For x ∈ {0, 1}^d, B is a 0/1 matrix and the largest determinant of an r×r
0/1 matrix is at most (r+1)^{(r+1)/2} / 2^r (it equals 2^{−r} times the largest
determinant of an (r+1)×(r+1) ±1 matrix, Williamson 1946, which Hadamard bounds);
writing s = 2u − 1 with u ∈ {0, 1}^r splits det B_j into two 0/1 determinants, so

    |w_i|, |b| ≤ M = 3 (r+1)^{(r+1)/2} / 2^r

suffices for every feasible labelled subset of {0, 1}^d. Only that is assumed: a
solution with margin 1 and weights in [−M, M] exists whenever any solution exists,
which makes "no solution with |w| ≤ M" a proof that none exists at all.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linprog

from losslab.errors import UserError

__all__ = [
    "MAX_BIG_M",
    "binary_labels",
    "big_m",
    "fit_unit",
    "resolve_weight_bound",
    "unit_outputs",
    "weight_bound",
]

# Largest big-M coefficient we hand to HiGHS. Its integrality tolerance is 1e-6, so a
# binary at 1e-6 relaxes a constraint by up to 1e-6 · big-M; at 1e6 that is the whole
# margin. Every solution is re-solved as an LP with the binaries fixed and then checked
# by evaluating the units, so this limit protects the proofs of infeasibility, which
# cannot be checked that way.
MAX_BIG_M = 1e6


def binary_labels(y: np.ndarray, owner: str) -> np.ndarray:
    """Labels as int {0, 1}; a `UserError` unless the values are exactly 0 and 1 (or bools)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    values = np.unique(y)
    if y.ndim != 1 or not np.isin(values, (0, 1)).all() or len(values) == 0:
        shown = ", ".join(str(v) for v in values[:6]) + (", …" if len(values) > 6 else "")
        raise UserError(
            f"{owner} needs binary labels 0/1 (a two-class dataset); got the values {{{shown}}}: "
            "choose data with two classes, e.g. --data xor or --data spirals."
        )
    return y.astype(np.int64)


def unit_outputs(X: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    """Threshold unit outputs 1[w·x + b > 0] for each row of X, bool [n]."""
    return np.asarray(X, dtype=np.float64) @ np.asarray(w, dtype=np.float64) + float(b) > 0


def weight_bound(X: np.ndarray) -> float | None:
    """M = 3 (r+1)^{(r+1)/2} / 2^r for X ∈ {0, 1}^{n×d} (r = rank of [X, 1]); None for other data.

    With this M the margin-1 MILPs are exact (module docstring).

    >>> square = np.array([[0., 0.], [0., 1.], [1., 0.], [1., 1.]])
    >>> round(weight_bound(square), 9)  # r = 3: 3 · 4² / 2³
    6.0
    """
    X = np.asarray(X, dtype=np.float64)
    if not np.isin(X, (0.0, 1.0)).all():
        return None
    r = int(np.linalg.matrix_rank(np.c_[X, np.ones(len(X))]))
    try:
        # The factor 1 + 1e-12 covers the rounding of the power: M must not fall below the bound.
        return 3 * float(r + 1) ** ((r + 1) / 2) / 2.0**r * (1 + 1e-12)
    except OverflowError:
        return math.inf


def big_m(X: np.ndarray, M: float) -> np.ndarray:
    """Per-point big-M: 1 + M ‖(x, 1)‖₁ bounds |w·x + b| + 1 whenever |w_i|, |b| ≤ M."""
    return 1.0 + M * (np.abs(np.asarray(X, dtype=np.float64)).sum(1) + 1.0)


def resolve_weight_bound(X: np.ndarray, requested: float | str = "auto") -> tuple[float, bool, str]:
    """(M, exact, note) for ``requested`` = 'auto' or a number.

    'auto' is `weight_bound` when the data are 0/1 and the big-M it implies stays within
    `MAX_BIG_M`; otherwise the largest M that does, and the answer is exact only over
    weights in [−M, M] (still a real unit, so its error count bounds the true minimum
    from above). A number is exact when it is at least the proven bound.
    """
    proven = weight_bound(X)
    room = float((MAX_BIG_M - 1.0) / (np.abs(np.asarray(X, dtype=np.float64)).sum(1).max(initial=0.0) + 1.0))
    if requested == "auto":
        if proven is not None and proven <= room:
            return proven, True, f"exact: weights bounded by the proven M = {proven:.6g}"
        M = room
    elif isinstance(requested, (int, float)) and not isinstance(requested, bool) and requested > 0:
        M = float(requested)
        if proven is not None and M >= proven:
            return M, True, f"exact: M = {M:.6g} is at least the proven bound {proven:.6g}"
    else:
        raise UserError(f"The 'weight_bound' parameter must be 'auto' or a number > 0. Got {requested!r}.")
    why = (
        "the data are not 0/1, so no finite weight bound is known to suffice"
        if proven is None
        else f"the proven bound {proven:.6g} is larger"
    )
    return M, False, f"optimal over weights in [−{M:.6g}, {M:.6g}] only ({why})"


def fit_unit(signed: np.ndarray, M: float) -> tuple[np.ndarray, float] | None:
    """A unit with s_k x̃_k·(w, b) ≥ 1 on the rows ``signed`` = s_k x̃_k, |w_i|, |b| ≤ M; or None.

    Solutions of the MILPs are re-solved this way with their binaries fixed, so that
    HiGHS's integrality tolerance cannot shave the margin of the unit we return.
    """
    r = signed.shape[1]
    if len(signed) == 0:
        return np.zeros(r - 1), 1.0 if M >= 1 else M
    lp = linprog(np.zeros(r), A_ub=-signed, b_ub=-np.ones(len(signed)), bounds=[(-M, M)] * r, method="highs")
    if lp.status != 0:
        return None
    return lp.x[:-1], float(lp.x[-1])
