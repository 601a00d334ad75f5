"""Sharpness of a minimum: curvature, worst case in a neighbourhood, average under noise.

- λmax, the largest Hessian eigenvalue (`lanczos`), with its residual;
- ε-sharpness (Keskar et al. 2017): the largest loss increase in the box
  C_ε = {δ : |δᵢ| ≤ ε(|θᵢ| + 1)}, reported as 100·(max L(θ+δ) − L(θ)) / (1 + L(θ));
- adaptive sharpness (Kwon et al. 2021, ASAM): the largest increase over
  ‖T_θ⁻¹ δ‖_p ≤ ρ with T_θ = diag(|θ| + η); with η = 0 it is invariant under the
  rescalings that leave a ReLU network's function unchanged (θ and its rescaled copy
  have the same value), which λmax and ε-sharpness are not (Dinh et al. 2017);
- average-case sharpness E_δ[L(θ+δ)] − L(θ) under δ ~ N(0, σ²I) (or σ²T_θ² when
  adaptive), estimated with antithetic pairs ±δ (the gradient term cancels exactly,
  leaving ≈ σ²/2·tr H) and reported with its standard error.

The two worst-case numbers maximize L(θ + T u) over a ball ‖u‖ ≤ r by projected
gradient ascent in u (Madry et al. 2018): steps of 2.5·r/steps along sign(Tg) (ℓ∞) or
Tg/‖Tg‖ (ℓ2), projection onto the ball, and the best value seen, one full-batch gradient
per step. The start is the top eigenvector of THT on the boundary (the maximizer of the
quadratic model at a minimum, where the gradient gives no direction), or a random
point at half the radius when that is higher. Keskar et al. maximize with L-BFGS-B;
either way the result is a lower bound on the true maximum (maximizing a convex
quadratic over a box is NP-hard in general).

>>> import torch
>>> from losslab.objective import Objective
>>> X = torch.randn(40, 3, dtype=torch.float64); y = torch.randn(40, 1, dtype=torch.float64)
>>> obj = Objective(torch.nn.Linear(3, 1, bias=False), "mse", (X, y), dtype="float64")
>>> avg = average_sharpness(obj, obj.theta0, sigma=0.1, samples=4000)  # quadratic: σ²/2 · tr H
>>> abs(avg.increase - 0.01 / 2 * float((X.T @ X / 40).trace())) < 4 * avg.stderr + 1e-12
True
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from losslab.curvature.lanczos import Eigenpairs, lanczos
from losslab.curvature.operators import Operator, hessian_operator
from losslab.errors import check_choice, check_float, check_int
from losslab.objective import Objective
from losslab.store import register_result, summary_of

__all__ = [
    "AverageSharpness",
    "Sharpness",
    "WorstCaseSharpness",
    "adaptive_sharpness",
    "average_sharpness",
    "epsilon_sharpness",
    "sharpness",
]

ASCENT_STEPS = 20  # projected gradient-ascent steps of ε- and adaptive sharpness
AVERAGE_SAMPLES = 64  # antithetic pairs of average-case sharpness
START_HVPS = 60  # product budget of the rough Lanczos run that picks an ascent's start


@register_result
@dataclass
class WorstCaseSharpness:
    """The largest loss increase found in a neighbourhood of θ.

    ``kind`` 'epsilon' (Keskar; ``value`` = 100·increase/(1 + loss)) or 'adaptive'
    (Kwon; ``value`` = increase). ``history`` is the best increase after each step;
    ``gradients`` and ``hvps`` are what the ascent and its start cost.
    """

    kind: str
    radius: float
    norm: str
    eta: float
    loss: float
    increase: float
    value: float
    history: np.ndarray
    gradients: int
    hvps: int

    def summary(self) -> dict[str, Any]:
        return summary_of(self, "kind", "radius", "norm", "value", "increase", "gradients")


@register_result
@dataclass
class AverageSharpness:
    """E[L(θ+δ)] − L(θ) over Gaussian δ from ``samples`` antithetic pairs, with its std. error."""

    sigma: float
    adaptive: bool
    loss: float
    increase: float
    stderr: float
    samples: int

    def summary(self) -> dict[str, Any]:
        return summary_of(self, "sigma", "adaptive", "increase", "stderr", "samples")


@register_result
@dataclass
class Sharpness:
    """Every sharpness measure of one θ (see the module doc)."""

    loss: float
    lambda_max: float
    lambda_max_residual: float
    lambda_max_converged: bool
    epsilon: WorstCaseSharpness
    adaptive: WorstCaseSharpness
    average: AverageSharpness
    hvps: int
    wall_seconds: float

    def summary(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "lambda_max": self.lambda_max,
            "lambda_max_residual": self.lambda_max_residual,
            "epsilon_sharpness": self.epsilon.value,
            "epsilon": self.epsilon.radius,
            "adaptive_sharpness": self.adaptive.value,
            "rho": self.adaptive.radius,
            "average_sharpness": self.average.increase,
            "average_stderr": self.average.stderr,
            "sigma": self.average.sigma,
        } | summary_of(self, "hvps", "wall_seconds")


def _ascent(
    objective: Objective,
    theta: torch.Tensor,
    scale: torch.Tensor,
    radius: float,
    norm: str,
    steps: int,
    seed: int,
) -> tuple[float, float, np.ndarray, int]:
    """max over ‖u‖ ≤ radius of L(θ + scale⊙u) − L(θ) by projected gradient ascent.

    The ascent starts from the better of two points: the top eigenvector of the scaled
    Hessian S H S (S = diag(scale)) pushed to the boundary and signed to climb the
    gradient, the maximizer of the second-order model when ∇L ≈ 0; and a random point at
    half the radius. Returns (L(θ), the best increase, the best increase after each
    step, the Hessian-vector products spent on the start).
    """
    value0, grad0 = objective.value_and_grad(theta)
    loss0 = float(value0)
    hessian = hessian_operator(objective, objective.curvature_at(theta))
    scaled = Operator(
        lambda V: hessian.matmat(V * scale) * scale,
        objective.dim,
        dtype=objective.dtype,
        device=objective.device,
        name="scaled hessian",
    )
    # A rough direction is enough to pick the start; ascent refines it.
    v = torch.as_tensor(lanczos(scaled, 1, tol=1e-3, max_hvps=START_HVPS, seed=seed).vectors[0]).to(theta)
    if float((scale * grad0) @ v) < 0:
        v = -v
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(objective.dim, generator=g, dtype=torch.float64).to(theta)

    def project(u: torch.Tensor) -> torch.Tensor:
        if norm == "inf":
            return u.clamp(-radius, radius)
        length = float(u.norm())
        return u * (radius / length) if length > radius else u

    if norm == "inf":
        starts = torch.stack([radius * v.sign(), 0.5 * radius * noise.sign()])
    else:
        starts = torch.stack([radius * v / v.norm(), 0.5 * radius * noise / noise.norm()])
    u = starts[int(objective.loss_many(theta + scale * starts).argmax())]
    step = 2.5 * radius / steps
    best, history = 0.0, []
    for _ in range(steps):
        value, grad = objective.value_and_grad(theta + scale * u)
        best = max(best, float(value) - loss0)
        history.append(best)
        direction = scale * grad
        if norm == "inf":
            u = project(u + step * direction.sign())
        else:
            length = float(direction.norm())
            if length == 0.0:
                break
            u = project(u + step * direction / length)
    best = max(best, float(objective.loss(theta + scale * u)) - loss0)
    history.append(best)
    return loss0, best, np.asarray(history), hessian.count


def epsilon_sharpness(
    objective: Objective, theta: torch.Tensor, *, eps: float = 1e-3, steps: int = ASCENT_STEPS, seed: int = 0
) -> WorstCaseSharpness:
    """Keskar et al. (2017): 100·(max_{δ∈C_ε} L(θ+δ) − L(θ)) / (1 + L(θ)).

    C_ε = {δ : |δᵢ| ≤ ε(|θᵢ| + 1)}.
    """
    check_float(eps, "eps", "epsilon_sharpness", low=0.0, low_open=True)
    check_int(steps, "steps", "epsilon_sharpness", low=1)
    theta = objective.as_theta(theta)
    scale = eps * (theta.abs() + 1)
    loss, increase, history, hvps = _ascent(objective, theta, scale, 1.0, "inf", steps, seed)
    return WorstCaseSharpness(
        "epsilon",
        float(eps),
        "inf",
        1.0,
        loss,
        increase,
        100 * increase / (1 + loss),
        history,
        steps,
        hvps,
    )


def adaptive_sharpness(
    objective: Objective,
    theta: torch.Tensor,
    *,
    rho: float = 0.1,
    norm: str = "2",
    eta: float = 0.0,
    steps: int = ASCENT_STEPS,
    seed: int = 0,
) -> WorstCaseSharpness:
    """Kwon et al. (2021): max over ‖δ / (|θ| + η)‖_p ≤ ρ of L(θ+δ) − L(θ), p = 2 or 'inf'."""
    check_float(rho, "rho", "adaptive_sharpness", low=0.0, low_open=True)
    check_choice(norm, "norm", "adaptive_sharpness", ("2", "inf"))
    check_float(eta, "eta", "adaptive_sharpness", low=0.0)
    check_int(steps, "steps", "adaptive_sharpness", low=1)
    theta = objective.as_theta(theta)
    scale = theta.abs() + eta
    loss, increase, history, hvps = _ascent(objective, theta, scale, float(rho), norm, steps, seed)
    return WorstCaseSharpness("adaptive", float(rho), norm, float(eta), loss, increase, increase, history, steps, hvps)


def average_sharpness(
    objective: Objective,
    theta: torch.Tensor,
    *,
    sigma: float = 0.01,
    samples: int = AVERAGE_SAMPLES,
    adaptive: bool = False,
    eta: float = 0.0,
    seed: int = 0,
) -> AverageSharpness:
    """E[L(θ+δ)] − L(θ), δ ~ N(0, σ²I) (N(0, σ² diag(|θ|+η)²) when ``adaptive``), antithetic.

    Each pair costs two loss evaluations, all evaluated together with `Objective.loss_many`.
    """
    check_float(sigma, "sigma", "average_sharpness", low=0.0, low_open=True)
    check_int(samples, "samples", "average_sharpness", low=2)
    theta = objective.as_theta(theta)
    loss0 = float(objective.loss(theta))
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(samples, objective.dim, generator=g, dtype=torch.float64).to(theta.device, theta.dtype)
    delta = sigma * noise * ((theta.abs() + eta) if adaptive else 1.0)
    losses = objective.loss_many(torch.cat([theta + delta, theta - delta])).double()
    if not bool(torch.isfinite(losses).all()):
        from losslab.errors import UserError

        raise UserError(f"The loss is not finite at some points θ ± δ with sigma={sigma}: lower --sigma.")
    pairs = (losses[:samples] + losses[samples:]) / 2 - loss0
    return AverageSharpness(
        float(sigma),
        bool(adaptive),
        loss0,
        float(pairs.mean()),
        float(pairs.std(correction=1)) / math.sqrt(samples),
        samples,
    )


def sharpness(
    objective: Objective,
    theta: torch.Tensor | None = None,
    *,
    eps: float = 1e-3,
    rho: float = 0.1,
    norm: str = "2",
    eta: float = 0.0,
    sigma: float = 0.01,
    samples: int = AVERAGE_SAMPLES,
    steps: int = ASCENT_STEPS,
    top: Eigenpairs | None = None,
    tol: float = 1e-5,
    seed: int = 0,
) -> Sharpness:
    """λmax, ε-sharpness, adaptive sharpness and average-case sharpness of ``objective`` at θ.

    ``top`` reuses earlier top eigenpairs (e.g. from `lanczos`) for λmax.
    """
    t0 = time.perf_counter()
    theta = objective.as_theta(objective.theta0 if theta is None else theta)
    hvps = 0
    if top is None:
        op = hessian_operator(objective, theta)
        top = lanczos(op, 1, tol=tol, seed=seed)
        hvps = op.count
    eps_result = epsilon_sharpness(objective, theta, eps=eps, steps=steps, seed=seed)
    adaptive = adaptive_sharpness(objective, theta, rho=rho, norm=norm, eta=eta, steps=steps, seed=seed)
    average = average_sharpness(objective, theta, sigma=sigma, samples=samples, seed=seed)
    return Sharpness(
        loss=eps_result.loss,
        lambda_max=float(top.eigenvalues[0]),
        lambda_max_residual=float(top.residuals[0]),
        lambda_max_converged=bool(top.converged[0]),
        epsilon=eps_result,
        adaptive=adaptive,
        average=average,
        hvps=hvps + eps_result.hvps + adaptive.hvps,
        wall_seconds=time.perf_counter() - t0,
    )
