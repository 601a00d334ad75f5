"""A single threshold unit: linear separability as an LP, fewest errors as a MILP.

Separability (an LP). With x̃ = (x, 1), labels s_k = ±1 and ‖w‖∞ ≤ 1, maximize the
margin γ subject to s_k (w·x_k + b) ≥ γ. The data are strictly separable iff γ* > 0;
then the unit's ℓ1 margin (the ℓ1 distance from the closest point to the hyperplane,
|w·x + b| / ‖w‖∞) is γ*, the largest any hyperplane achieves. Otherwise Gordan's
theorem of the alternative (Gordan 1873; Schrijver 1986, §7.8) gives a certificate:
no (w, b) has s_k x̃_k · (w, b) > 0 for all k iff some λ ≥ 0, Σλ = 1, has

    Σ_k λ_k s_k x̃_k = 0,

i.e. a convex combination of positives equals one of negatives with the same weight
on each side: the two convex hulls meet. The certificate comes from an LP (dual
simplex, so it is a vertex with few nonzeros) and is then checked without the
solver: the equations are re-solved in exact rational arithmetic on the support (the
floats of the data are rationals), and every λ_k must come out ≥ 0. Any λ also proves,
in floating point, that no unit has a normalized margin above the residual
‖Σ λ_k s_k x̃_k‖₂ (for ‖(w, b)‖₂ = 1: γ ≤ Σ λ_k s_k x̃_k · (w, b) ≤ the residual).

Fewest errors (a MILP). Minimize Σ e_k subject to s_k (w·x_k + b) ≥ 1 − B_k e_k,
e_k ∈ {0, 1}, |w_i|, |b| ≤ M, where B_k = 1 + M‖x̃_k‖₁ switches the constraint off. With
M from `threshold.weight_bound` (0/1 data) the optimum is the true minimum; otherwise
it is the minimum over bounded weights, an upper bound. The problem is NP-hard in
general (Johnson & Preparata 1978; Amaldi & Kann 1995, even to approximate), so the
MILP is exact for small n and may time out beyond.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from losslab.errors import UserError, check_float
from losslab.exact.solver import SolverError, solve_milp
from losslab.exact.threshold import big_m, binary_labels, fit_unit, resolve_weight_bound
from losslab.store import register_result, summary_of

__all__ = ["FewestErrorsResult", "PerceptronResult", "fewest_errors", "perceptron", "separate"]

_EXACT_SUPPORT = 64  # the rational check runs on supports up to this size (a vertex has ≤ d + 2)


@register_result
@dataclass
class FewestErrorsResult:
    """The fewest points a threshold unit misclassifies.

    ``errors`` is counted by evaluating the returned unit (w, b) on the points; with
    ``exact`` it is the proven minimum, else the minimum over weights in
    [−weight_bound, weight_bound] (``note`` says which).
    """

    errors: int
    misclassified: np.ndarray
    w: np.ndarray
    b: float
    weight_bound: float
    exact: bool
    note: str
    nodes: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        return summary_of(self, "errors", "exact", "weight_bound", "nodes", "seconds")


@register_result
@dataclass
class PerceptronResult:
    """Separability of two-class data by one threshold unit, with its proof either way.

    Separable: the unit (w, b) with the largest ℓ1 margin ``margin`` (‖w‖∞ = 1) and its
    Euclidean margin ``margin_l2``. Not separable: ``certificate`` λ [n] (Gordan), checked
    in exact arithmetic when ``certificate_exact``; ``certificate_residual`` is its
    floating-point residual ‖Σ λ_k s_k x̃_k‖₂. ``fewest`` is the fewest-errors unit.
    """

    separable: bool
    margin: float
    margin_l2: float
    w: np.ndarray
    b: float
    certificate: np.ndarray
    certificate_exact: bool
    certificate_residual: float
    X: np.ndarray
    y: np.ndarray
    seconds: float
    fewest: FewestErrorsResult | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"separable": self.separable, "points": int(len(self.y))}
        if self.separable:
            out.update(margin_l1=self.margin, margin_l2=self.margin_l2)
        else:
            out.update(
                certificate_support=int((self.certificate > 0).sum()),
                certificate_exact=self.certificate_exact,
                certificate_residual=self.certificate_residual,
            )
        if self.fewest is not None:
            out["fewest_errors"] = self.fewest.summary()
        out["seconds"] = round(self.seconds, 3)
        return out


def _check_data(X: np.ndarray, y: np.ndarray, owner: str) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) == 0 or np.ndim(y) == 0 or len(X) != len(y):
        raise UserError(f"{owner} needs inputs X [n, d] and labels y [n]. Got {X.shape} and {np.shape(y)}.")
    if not np.isfinite(X).all():
        raise UserError(f"The inputs of {owner} contain NaN or inf: clean or impute them first.")
    y = binary_labels(y, owner)
    if len(np.unique(y)) < 2:
        raise UserError(f"{owner} needs both labels 0 and 1 among the points; all {len(y)} are {int(y[0])}.")
    return X, y


def separate(X: np.ndarray, y: np.ndarray) -> PerceptronResult:
    """Decide separability of (X, y): a maximal-margin unit or a checked Gordan certificate."""
    start = time.perf_counter()
    X, y = _check_data(X, y, "perceptron")
    n, d = X.shape
    s = 2.0 * y - 1.0
    signed = s[:, None] * np.c_[X, np.ones(n)]  # rows s_k x̃_k
    # max γ  s.t.  s_k x̃_k·(w, b) ≥ γ, |w_i| ≤ 1; variables (w, b, γ).
    c = np.r_[np.zeros(d + 1), -1.0]
    bounds = [(-1.0, 1.0)] * d + [(None, None), (None, None)]
    lp = linprog(c, A_ub=np.c_[-signed, np.ones(n)], b_ub=np.zeros(n), bounds=bounds, method="highs")
    if lp.status != 0:
        raise SolverError(f"HiGHS failed on the separability LP ({lp.message}).", status=f"lp_status_{lp.status}")
    w, b = lp.x[:d], float(lp.x[d])
    margins = signed @ np.r_[w, b]
    if margins.min() > 0:  # verified by evaluation, not read off the solver
        scale = float(np.abs(w).max())
        return PerceptronResult(
            True,
            float(margins.min() / scale),
            float(margins.min() / np.linalg.norm(w)) if scale > 0 else np.inf,
            w / scale,
            b / scale,
            np.zeros(n),
            False,
            0.0,
            X,
            y,
            time.perf_counter() - start,
        )
    lam = _gordan(signed)
    exact = _check_exactly(signed, lam)
    residual = float(np.linalg.norm(signed.T @ lam))
    tolerance = 1e-9 * float(np.abs(signed).sum(1).max())
    if not exact and residual > tolerance:
        raise SolverError(
            "Neither a separating unit nor a checked non-separability certificate was found "
            f"(the data are numerically borderline: certificate residual {residual:.3g}); "
            "rescale the inputs.",
            status="unverified",
        )
    return PerceptronResult(False, 0.0, 0.0, np.zeros(d), 0.0, lam, exact, residual, X, y, time.perf_counter() - start)


def _gordan(signed: np.ndarray) -> np.ndarray:
    """A vertex λ ≥ 0, Σλ = 1, Σ λ_k s_k x̃_k = 0 (dual simplex), or a SolverError."""
    n = len(signed)
    A_eq = np.r_[signed.T, np.ones((1, n))]
    b_eq = np.r_[np.zeros(signed.shape[1]), 1.0]
    lp = linprog(np.zeros(n), A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method="highs-ds")
    if lp.status != 0:
        raise SolverError(
            "The separability LP found no separating unit but the certificate LP failed "
            f"({lp.message}): "
            "the data are numerically borderline; rescale the inputs.",
            status=f"lp_status_{lp.status}",
        )
    return np.maximum(lp.x, 0.0)


def _check_exactly(signed: np.ndarray, lam: np.ndarray) -> bool:
    """True when Σ λ_k s_k x̃_k = 0, Σλ = 1 has an exact solution λ ≥ 0 on the support of λ.

    Gaussian elimination over the rationals: the data's floats are exact rationals. The
    free variables keep λ's values (as exact fractions); the pivot variables are solved for.
    """
    support = np.flatnonzero(lam > 1e-12 * lam.max())
    if len(support) == 0 or len(support) > _EXACT_SUPPORT:
        return False
    rows = [[Fraction(float(v)) for v in signed[support, j]] + [Fraction(0)] for j in range(signed.shape[1])]
    rows.append([Fraction(1)] * len(support) + [Fraction(1)])
    pivots: list[tuple[int, int]] = []
    top = 0
    for col in range(len(support)):
        pick = next((i for i in range(top, len(rows)) if rows[i][col] != 0), None)
        if pick is None:
            continue
        rows[top], rows[pick] = rows[pick], rows[top]
        head = rows[top][col]
        rows[top] = [v / head for v in rows[top]]
        for i in range(len(rows)):
            if i != top and rows[i][col] != 0:
                factor = rows[i][col]
                rows[i] = [a - factor * p for a, p in zip(rows[i], rows[top], strict=True)]
        pivots.append((top, col))
        top += 1
        if top == len(rows):
            break
    if any(rows[i][-1] != 0 for i in range(top, len(rows))):
        return False  # inconsistent: no λ on this support
    values = [Fraction(float(lam[k])) for k in support]
    pivot_cols = {col for _, col in pivots}
    for row, col in pivots:
        values[col] = rows[row][-1] - sum(rows[row][j] * values[j] for j in range(len(support)) if j not in pivot_cols)
    return all(v >= 0 for v in values) and sum(values) == 1


def fewest_errors(
    X: np.ndarray, y: np.ndarray, *, weight_bound: float | str = "auto", time_limit: float = 60.0
) -> FewestErrorsResult:
    """The fewest misclassified points of one threshold unit (the MILP of the module docstring)."""
    X, y = _check_data(X, y, "fewest_errors")
    check_float(time_limit, "time_limit", "fewest_errors", low=0.0, low_open=True)
    n, d = X.shape
    M, exact, note = resolve_weight_bound(X, weight_bound)
    s = 2.0 * y - 1.0
    signed = s[:, None] * np.c_[X, np.ones(n)]
    # Variables (w, b, e): s_k x̃_k·(w, b) + B_k e_k ≥ 1.
    A = sp.hstack([sp.csr_matrix(signed), sp.diags(big_m(X, M))], format="csr")
    c = np.r_[np.zeros(d + 1), np.ones(n)]
    lower = np.r_[np.full(d + 1, -M), np.zeros(n)]
    upper = np.r_[np.full(d + 1, M), np.ones(n)]
    integrality = np.r_[np.zeros(d + 1), np.ones(n)]
    outcome = solve_milp(
        c,
        A,
        np.ones(n),
        np.full(n, np.inf),
        (lower, upper),
        integrality,
        time_limit=time_limit,
        what=f"the fewest-errors MILP ({n} points)",
    )
    if outcome.x is None:
        raise SolverError(
            "HiGHS called the fewest-errors MILP infeasible, which cannot be (e = 1 is feasible).",
            status="infeasible",
        )
    wrong = outcome.x[d + 1 :] > 0.5
    unit = fit_unit(signed[~wrong], M)
    if unit is None:
        raise SolverError("The fewest-errors solution did not re-solve as an LP.", status="unverified")
    w, b = unit
    misclassified = signed @ np.r_[w, b] <= 0
    if misclassified.sum() > round(outcome.objective or 0):
        raise SolverError("The fewest-errors solution did not verify on the points.", status="unverified")
    return FewestErrorsResult(
        int(misclassified.sum()),
        misclassified,
        w,
        b,
        M,
        exact,
        note,
        outcome.nodes,
        outcome.seconds,
    )


def perceptron(
    X: np.ndarray,
    y: np.ndarray,
    *,
    fewest: bool = True,
    weight_bound: float | str = "auto",
    time_limit: float = 60.0,
) -> PerceptronResult:
    """`separate`, and (``fewest=True``) the fewest-errors unit (the MILP unless separable)."""
    result = separate(X, y)
    if fewest:
        if result.separable:
            M = float(np.abs(np.r_[result.w, result.b]).max())
            result.fewest = FewestErrorsResult(
                0,
                np.zeros(len(result.y), dtype=bool),
                result.w,
                result.b,
                M,
                True,
                "exact: the data are separable",
                0,
                0.0,
            )
        else:
            result.fewest = fewest_errors(result.X, result.y, weight_bound=weight_bound, time_limit=time_limit)
        result.seconds += result.fewest.seconds
    return result
