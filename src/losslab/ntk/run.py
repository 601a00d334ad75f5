"""``losslab ntk``: the empirical NTK of a model on rows of its data, with its spectrum and checks.

config (`NTKConfig`) → runner (`run(setup, config)`) → result (`NTKResult`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from losslab.errors import check_choice, check_int
from losslab.ntk.kernel import METHODS, choose_method, ntk
from losslab.objective import Objective
from losslab.objective.cost import Estimate, Work
from losslab.store import register_result

__all__ = ["NTKConfig", "NTKResult", "estimate", "run", "run_objective"]


@dataclass(frozen=True)
class NTKConfig:
    """Which rows, which path, and how many eigenvalues to report."""

    rows: int = 128  # training rows the kernel is built on: Θ is [rows·k]², cheap up to a few thousand
    method: str = "auto"  # auto | jacobian | ntvp (auto: timed here, see losslab.ntk.kernel)
    top: int = 10  # largest eigenvalues kept in the summary
    block: int = 16  # examples per Jacobian block and columns per vmapped NTK-vector product

    def __post_init__(self) -> None:
        check_int(self.rows, "rows", "ntk", low=1)
        check_choice(self.method, "method", "ntk", METHODS)
        check_int(self.top, "top", "ntk", low=1)
        check_int(self.block, "block", "ntk", low=1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@register_result
@dataclass
class NTKResult:
    """Θ(X, X) on ``rows`` training rows: ``kernel`` [n, n, k, k], its eigenvalues (descending)
    as the [nk, nk] matrix, the output-trace kernel Σ_a Θ_aa [n, n], and checks.

    ``asymmetry`` is ‖Θ − Θᵀ‖_F/‖Θ‖_F; ``min_eigenvalue_relative`` is λ_min/λ_max (≥ −1e-6
    in float32 means PSD to round-off). ``predicted_seconds`` are the timed predictions of
    both paths (empty when the method was given).
    """

    kernel: np.ndarray
    trace_kernel: np.ndarray
    eigenvalues: np.ndarray
    method: str
    predicted_seconds: dict[str, float]
    seconds: float
    n: int
    outputs: int
    params: int
    asymmetry: float
    config: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        lam = self.eigenvalues
        top = int(self.config.get("top", 10))
        positive = lam[lam > 0]
        return {
            "n": self.n,
            "outputs": self.outputs,
            "params": self.params,
            "method": self.method,
            "seconds": self.seconds,
            "predicted_seconds": self.predicted_seconds,
            "trace": float(lam.sum()),
            "lambda_max": float(lam[0]),
            "lambda_min": float(lam[-1]),
            "min_eigenvalue_relative": float(lam[-1] / lam[0]) if lam[0] != 0 else 0.0,
            "condition_number": float(positive[0] / positive[-1]) if len(positive) else float("inf"),
            "top_eigenvalues": [float(v) for v in lam[:top]],
            "asymmetry": self.asymmetry,
            "units": "Theta(x, x')_ab = sum_d df_a(x)/dtheta_d df_b(x')/dtheta_d (output units squared)",
        }

    def warnings(self) -> list[str]:
        tol = 1e-5 if self.kernel.dtype == np.float32 else 1e-10
        if self.eigenvalues[-1] < -tol * max(self.eigenvalues[0], 1.0) * self.n:
            return [f"the kernel has eigenvalue {self.eigenvalues[-1]:.3g} < 0 beyond round-off: check determinism."]
        return []


def run_objective(objective: Objective, config: NTKConfig, theta: torch.Tensor | None = None) -> NTKResult:
    """The NTK of ``objective`` at θ (default θ₀) on its first ``config.rows`` rows."""
    theta = objective.theta0 if theta is None else objective.as_theta(theta)
    X = objective.X[: min(config.rows, objective.n)]
    method, predicted = config.method, {}
    if method == "auto":
        method, predicted = choose_method(objective, theta, len(X), len(X), rows=config.block, chunk=config.block)
    start = time.perf_counter()
    K = ntk(objective, theta, X, method=method, rows=config.block, chunk=config.block)
    seconds = time.perf_counter() - start
    n, _, k, _ = K.shape
    M = K.permute(0, 2, 1, 3).reshape(n * k, n * k).double()
    asym = float(torch.linalg.norm(M - M.T) / torch.linalg.norm(M).clamp_min(1e-300))
    lam = torch.linalg.eigvalsh((M + M.T) / 2).flip(0)
    return NTKResult(
        kernel=K.cpu().numpy(),
        trace_kernel=K.diagonal(dim1=2, dim2=3).sum(-1).cpu().numpy(),
        eigenvalues=lam.cpu().numpy(),
        method=method,
        predicted_seconds={key: float(v) for key, v in predicted.items()},
        seconds=seconds,
        n=n,
        outputs=k,
        params=objective.dim,
        asymmetry=asym,
        config=config.to_dict(),
    )


def run(setup: Any, config: NTKConfig, **_: Any) -> NTKResult:
    """The NTK of the setup's model (its checkpoint, or its initialization) on its training rows."""
    objective = setup.objective()
    return run_objective(objective, config)


def estimate(setup: Any, config: NTKConfig) -> Estimate:
    """The predicted seconds of the chosen path, timed on one unit here."""
    objective = setup.objective()
    n = min(config.rows, objective.n)
    _, predicted = choose_method(objective, objective.theta0, n, n, rows=config.block, chunk=config.block)
    method = config.method if config.method != "auto" else min(predicted, key=predicted.get)
    seconds = predicted[method]
    work = Work(f"NTK on {n} rows ({method})", 1, 1, seconds)
    return Estimate("ntk", [work], notes=[f"predicted seconds: {predicted}"])
