"""Loss and error barriers along a path θ(t), t ∈ [0, 1], under each common definition.

Given values v(t_0 = 0), …, v(t_{P-1} = 1) of the loss or the error along a path, a
barrier is the largest excess of v over a reference built from the endpoint values:

- ``linear``: v(t) − [(1 − t)·v(0) + t·v(1)], the excess over the straight line between
  the endpoint values (Entezari et al. 2022, eq. 1; Ainsworth et al. 2023);
- ``mean``: v(t) − ½[v(0) + v(1)], the height above the mean of the endpoints, the
  "error barrier height" of instability analysis (Frankle et al. 2020);
- ``max_endpoint``: v(t) − max(v(0), v(1)), the height above the worse endpoint: zero
  exactly when no point of the path is worse than both solutions.

All three are ≥ 0 (each excess is ≤ 0 at one endpoint at least) and each comes with t*,
where the largest excess sits (the first such point on ties).

>>> import numpy as np
>>> t = np.linspace(0, 1, 5)
>>> barrier(t, 1 + 2 * t + 4 * t * (1 - t), "linear")  # a bump of height 1 over a ramp
Barrier(definition='linear', height=1.0, t=0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from losslab.errors import UserError, check_choice

__all__ = ["DEFINITIONS", "Barrier", "barrier", "barriers"]

DEFINITIONS = ("linear", "mean", "max_endpoint")


@dataclass(frozen=True)
class Barrier:
    """The height of a barrier under one ``definition`` and the location ``t`` of its top."""

    definition: str
    height: float
    t: float


def _reference(t: np.ndarray, v: np.ndarray, definition: str) -> np.ndarray | float:
    if definition == "linear":
        return (1.0 - t) * v[0] + t * v[-1]
    if definition == "mean":
        return 0.5 * (v[0] + v[-1])
    return max(v[0], v[-1])


def barrier(
    t: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    definition: str = "linear",
) -> Barrier:
    """The barrier of ``values`` [P] at path positions ``t`` [P] (t[0] = 0, t[-1] = 1).

    A non-finite value anywhere gives a NaN height (there is no honest maximum then),
    unless it is +inf, which is the barrier.
    """
    check_choice(definition, "definition", "barrier", DEFINITIONS)
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or v.shape != t.shape or len(t) < 2:
        raise UserError(
            f"A barrier needs positions t and values of the same length ≥ 2. Got shapes {t.shape} and {v.shape}."
        )
    if t[0] != 0.0 or t[-1] != 1.0 or bool(np.any(np.diff(t) <= 0)):
        raise UserError("The path positions t must increase from 0 to 1 and include both endpoints.")
    if np.isnan(v).any() or np.isinf(v[[0, -1]]).any():
        return Barrier(definition, float("nan"), float("nan"))
    excess = v - _reference(t, v, definition)
    top = int(np.argmax(excess))
    return Barrier(definition, float(excess[top]), float(t[top]))


def barriers(t: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray) -> dict[str, Barrier]:
    """The barrier under every definition in `DEFINITIONS`."""
    return {d: barrier(t, values, d) for d in DEFINITIONS}
