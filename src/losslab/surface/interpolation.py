"""Linear interpolation between two points, and whether the loss falls monotonically along it.

Goodfellow, Vinyals & Saxe (2015, "Qualitatively characterizing neural network
optimization problems") found that the loss usually decreases monotonically along the
straight line from the initialization to the trained solution (monotonic linear
interpolation, MLI; studied at scale by Lucas et al. 2021). The curve is

    L(α) = L((1 − α) θ_a + α θ_b),

written in that form so α = 0 gives θ_a and α = 1 gives θ_b exactly (θ_a + α(θ_b − θ_a)
would not return θ_b at α = 1 in floating point).

The largest *bump* is the largest rise of the loss above its running minimum,

    bump = max_k [L(α_k) − min_{j ≤ k} L(α_j)],

reported with the α where it peaks and the α of the minimum it rises from. The curve
counts as monotone when the bump over α ∈ [0, 1] is within ``tolerance`` (round-off of
the loss itself; see `interpolate`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from losslab.errors import UserError, check_float
from losslab.objective import Objective
from losslab.store import register_result
from losslab.surface.points import metrics
from losslab.surface.slices import _check_test

__all__ = ["Interpolation", "bump", "interpolate"]


def bump(values: np.ndarray) -> tuple[float, int, int]:
    """(height, peak index, trough index) of the largest rise of ``values`` above their running min.

    0 height (and peak = trough = 0) for a non-increasing sequence. NaNs are ignored.
    """
    values = np.asarray(values, dtype=np.float64)
    best, peak, trough = 0.0, 0, 0
    low, low_at = np.inf, 0
    for k, v in enumerate(values):
        if np.isnan(v):
            continue
        if v < low:
            low, low_at = v, k
        if v - low > best:
            best, peak, trough = float(v - low), k, low_at
    return best, peak, trough


@register_result
@dataclass
class Interpolation:
    """The loss along (1 − α) θ_a + α θ_b: ``alphas`` [S], ``loss`` [S], accuracy and the test split
    when measured, and the MLI verdict over α ∈ [0, 1]: ``monotone``, ``bump`` (height),
    ``bump_alpha`` (where it peaks), ``bump_from`` (the α of the minimum it rises from).
    """

    alphas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray | None
    test_loss: np.ndarray | None
    test_accuracy: np.ndarray | None
    monotone: bool
    bump: float
    bump_alpha: float
    bump_from: float
    tolerance: float
    distance: float
    labels: list[str]
    seconds: float

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "from": self.labels[0],
            "to": self.labels[1],
            "steps": len(self.alphas),
            "monotone": self.monotone,
            "bump": self.bump,
            "bump_alpha": self.bump_alpha,
            "distance": self.distance,
        }
        for name, alpha in (("loss_start", 0.0), ("loss_end", 1.0)):
            at = np.flatnonzero(self.alphas == alpha)
            if len(at):
                out[name] = float(self.loss[at[0]])
        if self.test_loss is not None:
            out["test_loss_end"] = (
                float(self.test_loss[np.flatnonzero(self.alphas == 1.0)[0]]) if (self.alphas == 1.0).any() else None
            )
        return out


def interpolate(
    objective: Objective,
    theta_a: torch.Tensor,
    theta_b: torch.Tensor,
    alphas: np.ndarray,
    *,
    test: Objective | None = None,
    tolerance: float | None = None,
    labels: tuple[str, str] = ("a", "b"),
) -> Interpolation:
    """L((1 − α) θ_a + α θ_b) at each α (see `axis`), with the MLI verdict on α ∈ [0, 1].

    ``tolerance`` (default: 1e-5 relative in float32, 1e-12 in float64, times
    1 + max |L|) is the largest rise still counted as round-off: a mean of n
    per-example losses carries a relative error of a few ε·√n in practice (ε = 1.2e-7
    in float32, so ~1e-5 covers n up to ~10⁴ with margin), far below any bump worth
    reporting.
    """
    theta_a = objective.as_theta(theta_a, "θ_a")
    theta_b = objective.as_theta(theta_b, "θ_b")
    _check_test(objective, test)
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or len(alphas) < 2:
        raise UserError("interpolate needs at least 2 values of α: build them with axis(0, 1, steps).")
    al = torch.as_tensor(alphas).to(theta_a.device, theta_a.dtype)

    def fill(s: int, e: int, out: torch.Tensor) -> None:  # a few points at a time, inside the memory budget
        torch.outer(1 - al[s:e], theta_a, out=out).addr_(al[s:e], theta_b)

    span = torch.stack([theta_a, theta_b]), torch.stack([1 - al, al], dim=1)
    start = time.perf_counter()
    out = metrics(objective, test, len(al), fill, span=span)
    seconds = time.perf_counter() - start
    loss = out["loss"]
    inside = (alphas >= 0) & (alphas <= 1)
    rel = 1e-5 if objective.dtype == torch.float32 else 1e-12
    if tolerance is None:
        finite = loss[np.isfinite(loss)]
        tolerance = rel * (1.0 + (float(np.max(np.abs(finite))) if len(finite) else 0.0))
    tolerance = check_float(tolerance, "tolerance", "interpolate", low=0.0)
    height, peak, trough = bump(np.where(inside, loss, np.nan))
    distance = float((theta_b.double() - theta_a.double()).norm())
    return Interpolation(
        alphas,
        loss,
        out.get("accuracy"),
        out.get("test_loss"),
        out.get("test_accuracy"),
        bool(height <= tolerance and np.isfinite(loss[inside]).all()),
        height,
        float(alphas[peak]),
        float(alphas[trough]),
        tolerance,
        distance,
        list(labels),
        seconds,
    )
