"""A training trajectory seen from a plane: each snapshot's coordinates and distance off the plane.

For snapshots θ_t and the plane θ + a d₁ + b d₂, the coordinates (a_t, b_t) are the
least-squares solution of [d₁ d₂] c ≈ θ_t − θ (the orthogonal projection onto the
plane, which is the right one whether or not d₁ ⊥ d₂), and the residual
‖θ_t − θ − a_t d₁ − b_t d₂‖ says how much of the trajectory the picture cannot show
(Li et al. 2018 plot PCA directions precisely because random ones leave almost all of
it off the plane).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from losslab.errors import UserError
from losslab.objective import Objective
from losslab.store import register_result
from losslab.surface.directions import host_float64
from losslab.surface.points import metrics

__all__ = ["Trajectory", "fit_range", "project"]


@register_result
@dataclass
class Trajectory:
    """Snapshots projected onto a plane.

    ``coords`` [T, 2]; ``residual`` [T], the parameter-space distance off the plane; ``steps``
    [T], the training step of each snapshot; ``loss`` [T], the loss at the projected point on
    the plane (what a surface plot shows under the path; NaN when not evaluated).
    """

    coords: np.ndarray
    residual: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    source: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "snapshots": len(self.steps),
            "max_residual": float(np.max(self.residual)),
            "final_residual": float(self.residual[-1]),
        }


def project(
    snapshots: np.ndarray | torch.Tensor,
    theta: np.ndarray | torch.Tensor,
    d1: np.ndarray | torch.Tensor,
    d2: np.ndarray | torch.Tensor,
    *,
    steps: np.ndarray | None = None,
    objective: Objective | None = None,
    source: str = "",
) -> Trajectory:
    """Project snapshots [T, D] onto the plane θ + a d₁ + b d₂ (float64 least squares).

    With ``objective``, the loss at each projected point is evaluated too, a few points at a time
    inside its memory budget.
    """
    S, center = host_float64(snapshots), host_float64(theta)
    A = torch.stack([host_float64(d) for d in (d1, d2)], dim=1)  # [D, 2]
    if S.ndim != 2 or S.shape[1] != center.shape[0] or A.shape[0] != center.shape[0]:
        raise UserError(
            f"The trajectory's snapshots are {tuple(S.shape)} but the model has {center.shape[0]} "
            "parameters: give the train run of this model."
        )
    gram = A.T @ A
    if float(torch.linalg.det(gram)) <= 1e-12 * float(gram.diagonal().prod()):
        raise UserError("The two directions are parallel (no plane): use other directions or --orthogonalize.")
    R = S - center
    coords = torch.linalg.solve(gram, A.T @ R.T).T  # normal equations of [d₁ d₂] c ≈ r, 2×2 and well posed
    residual = (R - coords @ A.T).norm(dim=1)
    loss = np.full(len(S), np.nan)
    if objective is not None:
        c = coords.to(objective.device, objective.dtype)
        base = objective.as_theta(host_float64(theta))
        da = A[:, 0].to(objective.device, objective.dtype)
        db = A[:, 1].to(objective.device, objective.dtype)
        ones = torch.ones(len(c), 1, dtype=c.dtype, device=c.device)

        def fill(s: int, e: int, out: torch.Tensor) -> None:  # a few points at a time, inside the memory budget
            torch.addr(base.expand(e - s, -1), c[s:e, 0], da, out=out).addr_(c[s:e, 1], db)

        span = torch.stack([base, da, db]), torch.cat([ones, c], dim=1)
        loss = metrics(objective, None, len(c), fill, span=span)["loss"].astype(np.float64)
    steps_arr = np.arange(len(S), dtype=np.int64) if steps is None else np.asarray(steps, dtype=np.int64)
    return Trajectory(coords.numpy(), residual.numpy(), steps_arr, loss, source)


def fit_range(values: np.ndarray, margin: float = 0.15) -> tuple[float, float]:
    """[min, max] of ``values`` widened by ``margin`` of their span each side (PCA axes)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    span = hi - lo if hi > lo else max(abs(lo), 1.0)
    return lo - margin * span, hi + margin * span
