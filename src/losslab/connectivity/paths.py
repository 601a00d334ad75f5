"""Paths θ(t), t ∈ [0, 1], between two networks: the straight line and curves with a trainable bend.

- ``line``:   θ(t) = (1 − t)·θ_A + t·θ_B;
- ``bezier``: θ(t) = (1 − t)²·θ_A + 2t(1 − t)·θ_bend + t²·θ_B, the quadratic Bézier
  curve of Garipov et al. (2018);
- ``chain``:  the polygonal chain θ_A → θ_bend → θ_B, each half traversed linearly in t
  (Garipov et al. 2018; Draxler et al. 2018 find such low-loss paths by nudged elastic band).

Each is θ(t) = c(t)·[θ_A, θ_bend, θ_B] with coefficients c(t) ≥ 0 summing to 1, and
c(0) = (1, 0, 0), c(1) = (0, 0, 1) exactly, so the endpoints are the networks themselves
bit for bit. `fit_curve` trains the bend by minimizing E_{t∼U(0,1)} L(θ(t)), one uniform t
per step on a minibatch, as Garipov et al. (2018) do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from losslab.connectivity.batchnorm import interpolate_buffers
from losslab.connectivity.network import Network, has_batch_norm
from losslab.errors import UserError, check_choice
from losslab.objective import Objective
from losslab.store import register_result
from losslab.train import FlatOptimizer, TrainConfig

__all__ = ["CURVE_CONFIG", "PATH_KINDS", "CurveFit", "Path", "fit_curve"]

PATH_KINDS = ("line", "bezier", "chain")

# Momentum SGD as in Garipov et al. (2018), with a learning rate that trains the bend of the
# digits MLP stably; 20 epochs take its barrier from 0.73 to 0.0034 (benchmarks/connectivity.py).
CURVE_CONFIG = TrainConfig(optimizer="momentum", lr=0.05, momentum=0.9, batch_size=64, epochs=20)


@dataclass(frozen=True)
class Path:
    """θ(t) from ``start`` to ``end``: straight (``line``) or through ``bend`` (bezier, chain)."""

    kind: str
    start: Network
    end: Network
    bend: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_choice(self.kind, "path", "Path", PATH_KINDS)
        if self.kind != "line" and self.bend is None:
            raise UserError(f"A {self.kind} path needs a bend: build it with Path.curve or fit_curve.")
        if self.start.theta.shape != self.end.theta.shape:
            raise UserError("The two ends of a path must have the same number of parameters.")

    @classmethod
    def curve(cls, kind: str, start: Network, end: Network) -> Path:
        """A curve whose bend starts at the midpoint, i.e. as the line (Garipov et al. 2018)."""
        return cls(kind, start, end, 0.5 * (start.theta + end.theta))

    def coefficients(self, t: torch.Tensor) -> torch.Tensor:
        """c(t) [P, 3]: the weights of θ_A, θ_bend, θ_B at each position t [P]."""
        t = torch.as_tensor(t, dtype=self.start.theta.dtype, device=self.start.theta.device).reshape(-1)
        zero = torch.zeros_like(t)
        if self.kind == "line":
            return torch.stack([1 - t, zero, t], 1)
        if self.kind == "bezier":
            return torch.stack([(1 - t) ** 2, 2 * t * (1 - t), t**2], 1)
        first = t < 0.5
        return torch.stack(
            [
                torch.where(first, 1 - 2 * t, zero),
                torch.where(first, 2 * t, 2 - 2 * t),
                torch.where(first, zero, 2 * t - 1),
            ],
            1,
        )

    def thetas(self, t: torch.Tensor) -> torch.Tensor:
        """θ(t) for each position in ``t`` [P]; returns [P, D]."""
        c = self.coefficients(t)
        bend = self.bend if self.bend is not None else torch.zeros_like(self.start.theta)
        return c @ torch.stack([self.start.theta, bend.to(self.start.theta), self.end.theta])

    def buffers(self, t: float) -> dict[str, torch.Tensor]:
        """Buffers at t without the batch-norm reset: interpolated between the ends."""
        return interpolate_buffers(self.start.buffers, self.end.buffers, float(t))


@register_result
@dataclass
class CurveFit:
    """A trained bend: ``bend`` [D] and the mean minibatch loss along the curve per epoch."""

    kind: str
    bend: np.ndarray
    history: dict[str, np.ndarray]
    steps: int
    wall_seconds: float
    config: dict[str, Any]

    def path(self, start: Network, end: Network) -> Path:
        """The fitted curve between the endpoints it was trained for."""
        return Path(self.kind, start, end, torch.as_tensor(self.bend).to(start.theta))

    def summary(self) -> dict[str, Any]:
        loss = self.history["batch_loss"]
        return {
            "kind": self.kind,
            "steps": self.steps,
            "final_batch_loss": float(loss[-1]) if len(loss) else None,
            "wall_seconds": round(self.wall_seconds, 3),
        }


def fit_curve(
    objective: Objective,
    start: Network,
    end: Network,
    *,
    kind: str = "bezier",
    config: TrainConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CurveFit:
    """Train the bend of a ``bezier`` or ``chain`` curve between two networks.

    Each step draws t ∼ U(0, 1) and a minibatch (both seeded by ``config.seed``) and
    takes an optimizer step on the bend only; the endpoints never move. Batch norm runs
    in training mode on its own copy of the statistics, which the objective never sees.
    """
    check_choice(kind, "path", "fit_curve", ("bezier", "chain"))
    config = config or CURVE_CONFIG
    start_time = time.perf_counter()
    path = Path.curve(kind, start, end)
    bend = path.bend.clone()  # type: ignore[union-attr]
    bn = has_batch_norm(objective.model)
    # Train-mode batch norm updates running statistics in place: give it a private copy.
    private = {k: v.clone() for k, v in start.buffers.items()}
    trainer = objective.with_buffers(private) if bn else objective
    n = objective.n
    rows, per_epoch, total = config.batch_rows(n), config.steps_per_epoch(n), config.total_steps(n)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = FlatOptimizer(config, bend)
    losses: list[float] = []
    epoch_loss: list[float] = []
    order = torch.arange(n)
    for step in range(total):
        if step % per_epoch == 0:
            order = torch.randperm(n, generator=generator) if rows < n else torch.arange(n)
        index = order[(step % per_epoch) * rows : (step % per_epoch + 1) * rows].to(objective.device)
        t = torch.rand((), generator=generator, dtype=torch.float64)
        c = path.coefficients(t)[0]
        params = bend.detach().requires_grad_(True)
        theta = c[0] * start.theta + c[1] * params + c[2] * end.theta
        value = trainer.batch_loss(theta, index, train=bn)
        (grad,) = torch.autograd.grad(value, params)
        if not (torch.isfinite(value) and torch.isfinite(grad).all()):
            raise UserError(
                f"Training the {kind} bend diverged at step {step}: lower the curve learning rate (now {config.lr})."
            )
        bend = optimizer.step(bend, grad, config.lr_at(step, total))
        epoch_loss.append(float(value.detach()))
        if (step + 1) % per_epoch == 0 or step + 1 == total:
            losses.append(float(np.mean(epoch_loss)))
            epoch_loss = []
        if progress is not None:
            progress(step + 1, total)
    epochs = np.arange(1, len(losses) + 1, dtype=np.float64)
    epochs[-1] = total / per_epoch
    return CurveFit(
        kind,
        bend.detach().cpu().numpy().copy(),
        {"epoch": epochs, "batch_loss": np.asarray(losses)},
        total,
        time.perf_counter() - start_time,
        config.to_dict(),
    )
