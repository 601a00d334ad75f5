"""What a curvature run will cost: its products, gradients and points, timed at θ.

Lanczos and the trace estimators stop on their error estimates, so only their budgets
are known before they run; the density (``starts × steps`` products), the sharpness
ascents and the per-layer traces spend fixed amounts.
"""

from __future__ import annotations

import torch

from losslab.curvature.lanczos import _WORK, _orthogonalize, default_max_basis
from losslab.curvature.per_layer import LAYER_MAX_HVPS, LAYER_TRACE_SAMPLES
from losslab.curvature.sharpness import ASCENT_STEPS, AVERAGE_SAMPLES, START_HVPS
from losslab.errors import check_int
from losslab.objective import CurvatureAt
from losslab.objective.cost import (
    Estimate,
    Work,
    best_seconds,
    seconds_per_grad,
    seconds_per_hvp,
    seconds_per_point,
)

__all__ = ["estimate_curvature"]


def seconds_per_basis_vector(at: CurvatureAt, vectors: int = 8) -> float:
    """Seconds to orthogonalize a vector against one basis vector (Lanczos' two Gram–Schmidt passes).

    Step j of a Lanczos run orthogonalizes against the j vectors before it, so a run of m
    steps spends this times m(m+1)/2.
    """
    g = torch.Generator().manual_seed(0)
    d, device = at.objective.dim, at.theta.device
    basis = torch.linalg.qr(torch.randn(d, vectors, generator=g, dtype=_WORK)).Q.T.contiguous().to(device)
    w = torch.randn(d, generator=g, dtype=_WORK).to(device)
    return best_seconds(lambda: _orthogonalize(w.clone(), basis), at.objective.device) / vectors


def estimate_curvature(
    at: CurvatureAt,
    *,
    top: int = 0,
    bottom: int = 0,
    max_hvps: int | None = None,
    trace: str | None = None,
    trace_max_hvps: int = 1000,
    density: tuple[int, int] | None = None,
    sharpness: bool = False,
    per_layer: bool = False,
    ggn: bool = False,
) -> Estimate:
    """The work of `losslab hessian` at ``at`` with these pieces, and its time.

    ``trace`` names the trace method (None: no trace); ``density`` is (starts, steps).
    The defaults of the estimators (budgets, ascent steps, samples) are theirs.
    """
    objective = at.objective
    product = "GGN" if ggn else "Hessian"
    hvp_s = seconds_per_hvp(at, ggn=ggn)
    grad_s = seconds_per_grad(objective, at.theta)
    basis_s = seconds_per_basis_vector(at)
    work = [Work("gradient with its graph at θ (built once)", 1, 1, grad_s)]
    if top + bottom:
        k = top + bottom
        budget = max_hvps if max_hvps is not None else 40 * k + 400
        check_int(budget, "max_hvps", "hessian", low=1)
        which = ", ".join(f"{side}-{n}" for side, n in (("top", top), ("bottom", bottom)) if n)
        work.append(Work(f"{product} products, Lanczos {which} (stops when converged)", None, budget, hvp_s))
        # Step j orthogonalizes against the basis so far, which restarts at `default_max_basis` vectors.
        basis = default_max_basis(k, objective.dim)
        mean_basis = (budget + 1) / 2 if budget <= basis else basis
        work.append(Work(f"Lanczos {which}: reorthogonalization steps", None, budget, basis_s * mean_basis))
        if objective.dtype != torch.float64:
            # the certificate multiplies each returned pair once by the float64 twin; its time is
            # not measured here: a float64 product costs about twice a float32 one on CPU
            work.append(Work(f"float64 {product} products, certificate of the returned pairs", k, k, 2 * hvp_s))
    if trace is not None:
        work.append(Work(f"{product} products, {trace} trace (stops at its error target)", None, trace_max_hvps, hvp_s))
    if density is not None:
        starts, steps = density
        work.append(
            Work(
                f"{product} products, density ({starts} starts × {steps} steps)", starts * steps, starts * steps, hvp_s
            )
        )
        work.append(
            Work("density: reorthogonalization steps", starts * steps, starts * steps, basis_s * (steps + 1) / 2)
        )
    if sharpness:
        grads = 2 * (ASCENT_STEPS + 2)  # two ascents: start value, graph, one gradient per step
        work.append(Work("gradients, ε- and adaptive-sharpness ascents", grads, grads, grad_s))
        work.append(Work("Hessian products, the ascents' starting directions", None, 2 * START_HVPS, hvp_s))
        points = 2 * AVERAGE_SAMPLES + 7  # antithetic pairs, the ascents' starts and ends, L(θ)
        work.append(
            Work(
                "loss at perturbed points (average-case sharpness)",
                points,
                points,
                seconds_per_point(objective, at.theta, accuracy=False),
            )
        )
    if per_layer:
        layers = len(objective.layout.groups())
        work.append(
            Work(
                f"{product} products, λmax of {layers} layer blocks (stop when converged)",
                None,
                layers * LAYER_MAX_HVPS,
                hvp_s,
            )
        )
        # exact from unit vectors up to LAYER_TRACE_SAMPLES parameters, else `auto_trace` within that budget
        sizes = [w.stop - w.start for w in objective.layout.groups().values()]
        exact = sum(d for d in sizes if d <= LAYER_TRACE_SAMPLES)
        bound = exact + LAYER_TRACE_SAMPLES * sum(d > LAYER_TRACE_SAMPLES for d in sizes)
        count = exact if bound == exact else None
        work.append(Work(f"{product} products, per-layer traces", count, bound, hvp_s))
    notes = [
        f"One {product}-vector product takes {hvp_s * 1e3:.3g} ms here "
        f"({objective.dim:,} parameters, {objective.n:,} rows)."
    ]
    return Estimate("hessian", work, notes)
