"""Calls into the solvers (HiGHS through SciPy, Clarabel), with honest statuses.

A solve that does not end in a proven answer (time limit, numerical trouble) raises
`SolverError`, a `UserError` that names the status and the fix; no caller turns it into
a number. The scaling study catches it and records the status instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from losslab.errors import UserError

__all__ = ["MilpOutcome", "SolverError", "solve_milp", "solve_milp_bounded"]

# scipy.optimize.milp's status codes (HiGHS underneath).
_MILP_STATUS = {0: "optimal", 1: "time_limit", 2: "infeasible", 3: "unbounded", 4: "failed"}


class SolverError(UserError):
    """A solver stopped without a proven answer; ``status`` says why (e.g. 'time_limit')."""

    def __init__(self, message: str, *, status: str, seconds: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.seconds = seconds


@dataclass
class MilpOutcome:
    """What HiGHS proved: ``status`` is 'optimal' or 'infeasible' (anything else raises).

    ``x`` is the optimal point (None when infeasible), ``objective`` its value,
    ``nodes`` the branch-and-bound nodes explored, ``seconds`` the wall time.
    """

    status: str
    x: np.ndarray | None
    objective: float | None
    nodes: int
    seconds: float
    dual_bound: float | None = None  # HiGHS's proven bound on the optimum (minimization: from below)


def _highs(
    c: np.ndarray,
    A: sp.spmatrix,
    lower: np.ndarray,
    upper: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    integrality: np.ndarray,
    time_limit: float,
) -> tuple[Any, str, int, float]:
    start = time.perf_counter()
    result = milp(
        c,
        constraints=LinearConstraint(A, lower, upper),
        bounds=Bounds(*bounds),
        integrality=integrality,
        options={"time_limit": float(time_limit), "mip_rel_gap": 0.0, "presolve": True},
    )
    status = _MILP_STATUS.get(result.status, "failed")
    return result, status, int(getattr(result, "mip_node_count", 0) or 0), time.perf_counter() - start


def solve_milp(
    c: np.ndarray,
    A: sp.spmatrix,
    lower: np.ndarray,
    upper: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    integrality: np.ndarray,
    *,
    time_limit: float,
    what: str,
) -> MilpOutcome:
    """min cᵀx s.t. lower ≤ A x ≤ upper, bounds, integrality; exact (relative gap 0).

    Raises `SolverError` unless HiGHS proves optimality or infeasibility within ``time_limit``.
    """
    outcome = solve_milp_bounded(c, A, lower, upper, bounds, integrality, time_limit=time_limit, what=what)
    if outcome.status == "time_limit":
        raise SolverError(
            f"HiGHS reached time_limit={time_limit:g} s on {what} without a proof ({outcome.nodes} nodes): "
            "raise --time-limit or make the instance smaller.",
            status=outcome.status,
            seconds=outcome.seconds,
        )
    return outcome


def solve_milp_bounded(
    c: np.ndarray,
    A: sp.spmatrix,
    lower: np.ndarray,
    upper: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    integrality: np.ndarray,
    *,
    time_limit: float,
    what: str,
) -> MilpOutcome:
    """Like `solve_milp`, but a stop at ``time_limit`` returns what HiGHS has, with its bound.

    ``status`` is 'optimal', 'infeasible' or 'time_limit'; at a time limit ``x`` is the best
    solution found (None if none was) and ``dual_bound`` the proven lower bound on the
    optimum, so the caller can state a certified gap instead of failing. Other stops raise.
    """
    result, status, nodes, seconds = _highs(c, A, lower, upper, bounds, integrality, time_limit)
    bound = getattr(result, "mip_dual_bound", None)
    bound = float(bound) if bound is not None and np.isfinite(bound) else None
    if status in ("optimal", "time_limit"):
        x = None if result.x is None else np.asarray(result.x)
        objective = None if result.x is None else float(result.fun)
        return MilpOutcome(status, x, objective, nodes, seconds, objective if status == "optimal" else bound)
    if status == "infeasible":
        return MilpOutcome(status, None, None, nodes, seconds)
    raise SolverError(
        f"HiGHS stopped on {what} with status {status!r} ({result.message}): the model may be badly scaled; "
        "try a smaller weight bound.",
        status=status,
        seconds=seconds,
    )
