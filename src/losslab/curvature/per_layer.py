"""Curvature per layer: the diagonal Hessian (or GGN) block of each parameter group.

For each group g of `ParamLayout.groups` (a layer's weight and bias), λmax(H_gg) by
`lanczos` on the restricted operator, and tr(H_gg) for every group at once from one
set of Hutchinson probes of the full operator (z_gᵀ(Hz)_g has mean tr H_gg). By Cauchy
interlacing λmax(H_gg) ≤ λmax(H), and Σ_g tr H_gg = tr H.

>>> import losslab, torch
>>> obj = losslab.Objective(losslab.build_model("mlp:4-3-2", seed=0), "cross_entropy",
...                         (torch.randn(20, 4), torch.randint(2, (20,))), dtype="float64")
>>> layers = per_layer(obj, obj.theta0, trace_samples=20)
>>> layers.groups, layers.sizes.tolist()
(['1', '3'], [15, 8])
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from losslab.curvature.lanczos import lanczos
from losslab.curvature.operators import ggn_operator, hessian_operator
from losslab.curvature.trace import hutchinson
from losslab.errors import check_int
from losslab.objective import CurvatureAt, Objective
from losslab.store import register_result

__all__ = ["LayerCurvature", "per_layer"]

LAYER_MAX_HVPS = 300  # product budget of each layer's λmax run
LAYER_TRACE_SAMPLES = 100  # Hutchinson probes shared by every layer's trace


@register_result
@dataclass
class LayerCurvature:
    """Per parameter group: size, module, λmax of its block (with residual), trace (± stderr)."""

    groups: list[str]
    modules: list[str]
    sizes: np.ndarray
    lambda_max: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    trace: np.ndarray
    trace_stderr: np.ndarray
    operator: str
    hvps: int
    wall_seconds: float

    def summary(self) -> dict[str, Any]:
        return {
            "groups": len(self.groups),
            "sharpest": self.groups[int(np.argmax(self.lambda_max))],
            "lambda_max": {g: float(v) for g, v in zip(self.groups, self.lambda_max, strict=True)},
            "trace": {g: float(v) for g, v in zip(self.groups, self.trace, strict=True)},
            "hvps": self.hvps,
        }


def per_layer(
    objective: Objective,
    theta: torch.Tensor | CurvatureAt | None = None,
    *,
    ggn: bool = False,
    tol: float = 1e-4,
    max_hvps: int = LAYER_MAX_HVPS,
    trace_samples: int = LAYER_TRACE_SAMPLES,
    seed: int = 0,
) -> LayerCurvature:
    """λmax and trace of each layer's diagonal curvature block at θ (the GGN's with ``ggn``)."""
    check_int(trace_samples, "trace_samples", "per_layer", low=2)
    t0 = time.perf_counter()
    if isinstance(theta, CurvatureAt):
        at = theta  # products at θ computed before (its gradient graph is reused)
    else:
        at = objective.curvature_at(objective.theta0 if theta is None else theta)
    op = (ggn_operator if ggn else hessian_operator)(objective, at)
    groups = objective.layout.groups()
    modules = []
    for name in groups:
        try:
            modules.append(type(objective.model.get_submodule(name)).__name__)
        except AttributeError:  # a top-level parameter, not a module
            modules.append("Parameter")
    lam, res, conv = [], [], []
    for name, where in groups.items():
        block = op.restrict(where, name=f"{op.name}[{name}]")
        pair = lanczos(block, 1, tol=tol, max_hvps=max_hvps, seed=seed)
        lam.append(pair.eigenvalues[0])
        res.append(pair.residuals[0])
        conv.append(pair.converged[0])
    trace = hutchinson(op, tol=1e-9, max_hvps=trace_samples, min_samples=2, seed=seed, groups=groups)
    return LayerCurvature(
        groups=list(groups),
        modules=modules,
        sizes=np.asarray([w.stop - w.start for w in groups.values()]),
        lambda_max=np.asarray(lam, dtype=np.float64),
        residuals=np.asarray(res, dtype=np.float64),
        converged=np.asarray(conv, dtype=bool),
        trace=np.asarray([trace.groups[g][0] for g in groups]),
        trace_stderr=np.asarray([trace.groups[g][1] for g in groups]),
        operator=op.name,
        hvps=op.count,
        wall_seconds=time.perf_counter() - t0,
    )
