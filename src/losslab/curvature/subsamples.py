"""The spread of the headline curvature numbers over disjoint seeded subsamples of the rows.

Curvature on a subsample (`Objective.subsample`, ``--rows N``) is cheaper, and it is a
different matrix: H on N rows is an average of N per-example Hessians, so λmax and the
trace move with the choice of rows (their spread shrinks like 1/√N for the trace; λmax of
a sum is biased upwards on small N). One subsample's figure cannot say how far it is from
another's, so `subsample_spread` measures λmax and tr(H) on K disjoint subsamples (blocks
of one seeded permutation, i.e. K fixed minibatches) and reports mean ± sample standard
deviation, and on request the value on all rows beside them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from losslab.curvature.lanczos import extreme_eigenpairs
from losslab.curvature.operators import matrix_operator
from losslab.objective import Objective
from losslab.store import register_result

__all__ = ["SubsampleSpread", "headline", "subsample_spread"]


@register_result
@dataclass
class SubsampleSpread:
    """λmax and trace on ``subsamples`` disjoint subsamples of ``rows`` of the ``n`` rows.

    Arrays hold one entry per subsample (NaN where the number was not asked for);
    ``full_*`` the values on all ``n`` rows (NaN unless asked for).
    """

    rows: int
    n: int
    seed: int
    operator: str
    lambda_max: np.ndarray
    lambda_max_certified: np.ndarray
    trace: np.ndarray
    trace_stderr: np.ndarray
    full_lambda_max: float
    full_trace: float
    full_trace_stderr: float
    hvps: int
    wall_seconds: float

    @property
    def subsamples(self) -> int:
        return len(self.lambda_max)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows, "of": self.n, "subsamples": self.subsamples, "seed": self.seed}
        for name, values, full in (
            ("lambda_max", self.lambda_max, self.full_lambda_max),
            ("trace", self.trace, self.full_trace),
        ):
            if np.isnan(values).all():
                continue
            std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
            out[name] = {"mean": float(np.mean(values)), "std": std, "values": [float(v) for v in values]}
            if not math.isnan(full):
                out[name]["full"] = full
        out["hvps"] = self.hvps
        return out

    def warnings(self) -> list[str]:
        """Subsamples whose λmax is not certified (its spread then mixes in solver error)."""
        bad = [i for i, ok in enumerate(self.lambda_max_certified) if not ok and not math.isnan(self.lambda_max[i])]
        if not bad:
            return []
        return [f"λmax is not certified on subsample(s) {', '.join(map(str, bad))}: raise max_hvps"]


def headline(
    objective: Objective,
    matrix: str,
    *,
    top: bool,
    trace: Callable[..., Any] | None,
    tol: float,
    max_hvps: int | None,
    trace_tol: float,
    trace_max_hvps: int,
    seed: int,
) -> dict[str, float]:
    """λmax (with whether it is certified) and the trace (± stderr) of ``matrix`` at θ₀."""
    op = matrix_operator(objective, objective.curvature_at(objective.theta0), matrix)
    out = {"lambda_max": math.nan, "certified": 0.0, "trace": math.nan, "trace_stderr": math.nan}
    if top:
        pairs, _ = extreme_eigenpairs(op, 1, 0, tol=tol, max_hvps=max_hvps, seed=seed)
        out["lambda_max"], out["certified"] = float(pairs.eigenvalues[0]), float(pairs.all_certified)
    if trace is not None:
        est = trace(op, tol=trace_tol, max_hvps=trace_max_hvps, seed=seed)
        out["trace"], out["trace_stderr"] = est.estimate, est.stderr
    out["hvps"] = float(op.count)
    return out


def subsample_spread(
    objective: Objective,
    first: dict[str, float],
    subsamples: int,
    compute: Callable[[Objective], dict[str, float]],
    *,
    operator: str = "hessian",
    full: bool = False,
    map_pieces: Callable[[Callable[[int], dict[str, float]], int], list[dict[str, float]]] | None = None,
) -> SubsampleSpread:
    """The spread over ``subsamples`` subsamples of the subsampled ``objective`` (its ``subsampled``).

    ``first`` holds the headline numbers already computed on ``objective`` itself (subsample 0);
    ``compute(objective)`` computes them on another; ``full`` adds the values on all rows.
    ``map_pieces(fn, count)`` runs ``fn(i)`` for i < count (resumable chunks; a loop by default).
    """
    t0 = time.perf_counter()
    assert objective.subsampled is not None, "subsample_spread needs an objective from Objective.subsample"
    parent, rows, seed, index = objective.subsampled
    others = [i for i in range(subsamples + 1) if i != index][: subsamples - 1]

    def piece(i: int) -> dict[str, float]:
        if i < len(others):
            return compute(parent.subsample(rows, seed=seed, index=others[i]))
        return compute(parent)  # the last piece, when asked: all rows

    count = len(others) + (1 if full else 0)
    done = map_pieces(piece, count) if map_pieces is not None else [piece(i) for i in range(count)]
    values = [first, *done[: len(others)]]
    whole = done[len(others)] if full else {"lambda_max": math.nan, "trace": math.nan, "trace_stderr": math.nan}
    return SubsampleSpread(
        rows=rows,
        n=parent.n,
        seed=seed,
        operator=operator,
        lambda_max=np.asarray([v["lambda_max"] for v in values], dtype=np.float64),
        lambda_max_certified=np.asarray([bool(v.get("certified", 1.0)) for v in values], dtype=bool),
        trace=np.asarray([v["trace"] for v in values], dtype=np.float64),
        trace_stderr=np.asarray([v["trace_stderr"] for v in values], dtype=np.float64),
        full_lambda_max=float(whole["lambda_max"]),
        full_trace=float(whole["trace"]),
        full_trace_stderr=float(whole["trace_stderr"]),
        hvps=int(sum(v.get("hvps", 0.0) for v in done)),
        wall_seconds=time.perf_counter() - t0,
    )
