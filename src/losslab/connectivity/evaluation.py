"""Loss and error along a path, evaluated through the Objective, with the barriers they imply.

Points of a path form one [P, D] block that the Objective evaluates together
(`Objective.metrics_many`). A network with batch norm is evaluated point by point:
each point first gets its own statistics (`reestimate_batch_norm`), or, with the reset
turned off, the endpoints' statistics interpolated like the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from losslab.connectivity.barriers import DEFINITIONS, Barrier, barrier
from losslab.connectivity.batchnorm import reestimate_batch_norm
from losslab.connectivity.network import has_batch_norm
from losslab.connectivity.paths import Path
from losslab.connectivity.repair import Repair
from losslab.errors import check_int
from losslab.objective import Objective
from losslab.store import register_result

__all__ = ["CURVES", "PathEvaluation", "evaluate_path"]

CURVES = ("train_loss", "train_error", "test_loss", "test_error")


@register_result
@dataclass
class PathEvaluation:
    """Values along one path: ``values[curve]`` [P] at positions ``t`` [P] (t[0] = 0, t[-1] = 1).

    Curves are 'train_loss', 'train_error' (1 − accuracy), 'test_loss' and 'test_error',
    those that apply (no error for regression, no test curves without a test split).
    """

    label: str
    kind: str
    t: np.ndarray
    values: dict[str, np.ndarray]
    bn_reset: bool
    repair: bool

    def barrier(self, curve: str = "train_loss", definition: str = "linear") -> Barrier:
        """The barrier of one curve under one definition (see `losslab.connectivity.barriers`)."""
        return barrier(self.t, self.values[curve], definition)

    def barriers(self) -> dict[str, dict[str, Barrier]]:
        """Every curve's barrier under every definition."""
        return {curve: {d: self.barrier(curve, d) for d in DEFINITIONS} for curve in self.values}

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for curve, by_definition in self.barriers().items():
            out[curve] = {d: b.height for d, b in by_definition.items()}
            out[curve]["t_linear"] = by_definition["linear"].t
        return out


def _curves(
    objective: Objective,
    test: Objective | None,
    thetas: torch.Tensor,
    buffers: dict[str, torch.Tensor],
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for split, obj in (("train", objective), ("test", test)):
        if obj is None:
            continue
        metrics = obj.with_buffers(buffers).metrics_many(thetas)
        out[f"{split}_loss"] = metrics["loss"].double().cpu().numpy()  # type: ignore[union-attr]
        if metrics["accuracy"] is not None:
            out[f"{split}_error"] = 1.0 - metrics["accuracy"].double().cpu().numpy()
    return out


def evaluate_path(
    objective: Objective,
    path: Path,
    *,
    points: int = 25,
    test: Objective | bool | None = True,
    bn_reset: bool = True,
    repair: Repair | None = None,
    label: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> PathEvaluation:
    """Train (and test) loss and error at ``points`` evenly spaced positions, both ends included.

    ``objective`` holds the training data (batch-norm statistics are always estimated on
    it); ``test`` is True for the dataset's test split, an Objective, or False.
    """
    check_int(points, "points", "connect", low=2)
    t = torch.linspace(0, 1, points, dtype=torch.float64)
    thetas = path.thetas(t)
    if repair is not None:
        thetas = torch.stack([repair(theta, float(ti)) for theta, ti in zip(thetas, t, strict=True)])
    test_obj = objective.test_objective(test)
    bn = has_batch_norm(objective.model)
    same_buffers = all(torch.equal(path.start.buffers[k], path.end.buffers[k]) for k in path.start.buffers)
    if not bn and same_buffers:
        values = _curves(objective, test_obj, thetas, path.start.buffers)
        if progress is not None:
            progress(points, points)
    else:
        rows: list[dict[str, np.ndarray]] = []
        for i, (theta, ti) in enumerate(zip(thetas, t, strict=True)):
            own = path.buffers(float(ti))
            if bn and bn_reset:
                own = reestimate_batch_norm(objective, theta, own)
            rows.append(_curves(objective, test_obj, theta[None], own))
            if progress is not None:
                progress(i + 1, points)
        values = {k: np.concatenate([row[k] for row in rows]) for k in rows[0]}
    return PathEvaluation(label or path.kind, path.kind, t.numpy(), values, bool(bn and bn_reset), repair is not None)
