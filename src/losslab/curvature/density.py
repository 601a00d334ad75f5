"""Spectral density by stochastic Lanczos quadrature (SLQ).

For a unit vector v, m Lanczos steps from v give T_m = S diag(θ) Sᵀ, and the nodes θⱼ
with weights τⱼ = (e₁ᵀ sⱼ)² form the m-point Gauss quadrature of the spectral measure
of A seen from v (Golub & Meurant 2010):

    vᵀ f(A) v ≈ Σⱼ τⱼ f(θⱼ),   exact for polynomials f of degree ≤ 2m − 1.

With v = z/√d for Rademacher z, d·vᵀ f(A) v is a Hutchinson sample of tr f(A), so the
average over random starts estimates tr f(A) for any f, and the density of eigenvalues
is the average of Σⱼ τⱼ δ(t − θⱼ), here broadened by a Gaussian of width σ
(Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019, who use σ² = 1e-5 on the
spectrum rescaled to [−1, 1], our default).

The starts run together: each Lanczos step is one ``matmat`` of all starts, and each
start is reorthogonalized against its own basis (in float64, twice), which keeps the
quadrature accurate at the price of memory: starts × steps × d × 8 bytes.

>>> import torch
>>> A = torch.diag(torch.linspace(-1.0, 2.0, 300, dtype=torch.float64))
>>> rho = slq(A, starts=4, steps=30)  # zᵀAz = tr A for diagonal A and signs z
>>> round(rho.trace, 6), rho.hvps, rho.weights.sum(1).round(12).tolist()
(150.0, 120, [1.0, 1.0, 1.0, 1.0])
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from losslab.curvature.lanczos import _eigh, _orthogonalize
from losslab.curvature.operators import Operator, as_operator
from losslab.errors import UserError, check_float, check_int
from losslab.store import register_result, summary_of

__all__ = ["SpectralDensity", "slq"]

_WORK = torch.float64


@register_result
@dataclass
class SpectralDensity:
    """The quadrature of each start and the smoothed density of eigenvalues.

    ``nodes`` and ``weights`` are [starts, steps] (each weight row sums to 1);
    ``density`` on ``grid`` integrates to 1 (a fraction of eigenvalues per unit);
    ``lambda_min``/``lambda_max`` are the extreme nodes (inner bounds on the spectrum);
    ``trace`` = d·mean(Σⱼ τⱼ θⱼ) with its standard error over the starts.
    """

    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    sigma: float
    lambda_min: float
    lambda_max: float
    trace: float
    trace_stderr: float
    dim: int
    hvps: int
    operator: str
    wall_seconds: float

    @property
    def starts(self) -> int:
        return int(self.nodes.shape[0])

    def moment(self, power: int) -> tuple[float, float]:
        """tr(A^power) estimated from the quadrature, with its standard error over the starts."""
        per_start = self.dim * (self.weights * self.nodes.astype(np.float64) ** power).sum(1)
        return _mean_stderr(per_start)

    def fraction_below(self, threshold: float) -> np.ndarray:
        """Per start, the quadrature estimate of the fraction of eigenvalues < ``threshold``."""
        return (self.weights * (self.nodes < threshold)).sum(1)

    def fraction_bounds(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Per start, bounds on vᵀ 1[A < threshold] v that hold whatever the quadrature misses.

        Chebyshev–Markov–Stieltjes inequalities (Szegő 1939, Thm 3.41.1): for Gauss nodes
        θ₁ < … < θ_m with weights τⱼ, Σ_{j<k} τⱼ ≤ F(θ_k − 0) and F(θ_k) ≤ Σ_{j≤k} τⱼ, so for
        θ_k < t ≤ θ_{k+1} the distribution F(t) lies between Σ_{j<k} τⱼ and Σ_{j≤k+1} τⱼ:
        the step costs the weight of the two nodes around it.
        """
        order = np.argsort(self.nodes, axis=1)
        nodes = np.take_along_axis(self.nodes, order, 1)
        weights = np.take_along_axis(self.weights, order, 1)
        cumulative = np.concatenate([np.zeros((len(nodes), 1)), np.cumsum(weights, 1)], 1)
        k = (nodes < threshold).sum(1)  # nodes θ₁ … θ_k lie below the threshold
        rows = np.arange(len(nodes))
        lower = cumulative[rows, np.maximum(k - 1, 0)]
        upper = cumulative[rows, np.minimum(k + 1, nodes.shape[1])]
        return lower, np.minimum(upper, 1.0)

    def summary(self) -> dict[str, Any]:
        return summary_of(self, "lambda_min", "lambda_max", "trace", "trace_stderr", "starts", "hvps", "wall_seconds")


def _mean_stderr(values: np.ndarray) -> tuple[float, float]:
    n = len(values)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf


def slq(
    A: Operator | torch.Tensor,
    *,
    starts: int = 4,
    steps: int = 48,
    seed: int = 0,
    sigma: float | None = None,
    grid_points: int = 2000,
    probes: torch.Tensor | None = None,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature with ``starts`` Rademacher starts of ``steps`` steps each.

    Costs starts × steps products (192 by default; ≤ 200 as losslab promises). ``sigma``
    is the Gaussian broadening in eigenvalue units (default: Ghorbani et al.'s σ² = 1e-5
    after rescaling the spectrum to [−1, 1]). When ``steps`` ≥ d the quadrature is exact.
    ``probes`` [starts, d] replaces the random Rademacher starts (each row is normalized).
    """
    op = as_operator(A)
    check_int(starts, "starts", "slq", low=1)
    check_int(steps, "steps", "slq", low=1)
    check_int(grid_points, "grid_points", "slq", low=10)
    if sigma is not None:
        check_float(sigma, "sigma", "slq", low=0.0, low_open=True)
    t0, count0 = time.perf_counter(), op.count
    d = op.dim
    m = min(steps, d)
    g = torch.Generator().manual_seed(int(seed))
    if probes is None:
        signs = torch.randint(0, 2, (starts, d), generator=g, dtype=torch.int8).to(_WORK) * 2 - 1
        q = (signs / math.sqrt(d)).to(op.device)
    else:
        q = torch.as_tensor(probes).to(op.device, _WORK)
        if q.ndim != 2 or q.shape[1] != d or not bool((q.norm(dim=1) > 0).all()):
            raise UserError(f"slq probes must be non-zero rows [starts, {d}]. Got shape {tuple(q.shape)}.")
        q = q / q.norm(dim=1, keepdim=True)
        starts = len(q)
    V = torch.zeros(starts, m, d, dtype=_WORK, device=op.device)
    T = np.zeros((starts, m, m))
    for j in range(m):
        V[:, j] = q
        W = op.matmat(q.to(op.dtype)).to(_WORK)
        for b in range(starts):
            h = _orthogonalize(W[b], V[b, : j + 1]).cpu().numpy()
            T[b, : j + 1, j] = h
            T[b, j, : j + 1] = h
        if j + 1 == m:
            break
        beta = W.norm(dim=1)
        scale = float(np.abs(T[:, : j + 1, : j + 1]).max()) or 1.0
        for b in range(starts):
            if float(beta[b]) <= 1e-12 * scale:
                # Invariant subspace: the quadrature of this start is already exact; a fresh
                # orthogonal direction gets zero weight (it is decoupled from e₁).
                fresh = torch.randn(d, generator=g, dtype=_WORK).to(op.device)
                _orthogonalize(fresh, V[b, : j + 1])
                W[b] = fresh / fresh.norm()
            else:
                W[b] = W[b] / beta[b]
        q = W
    theta, S = _eigh(T)
    weights = S[:, 0, :] ** 2
    nodes = theta
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        # Half the width of the spectrum; a spectrum of one point falls back to its size.
        half_width = (hi - lo) / 2 or max(abs(hi), np.finfo(np.float64).tiny)
        sigma = math.sqrt(1e-5) * half_width
    pad = 5 * sigma
    grid = np.linspace(lo - pad, hi + pad, grid_points)
    density = np.zeros(grid_points)
    for b in range(starts):  # one start at a time keeps memory at grid × steps
        z = (grid[:, None] - nodes[b][None, :]) / sigma
        density += (weights[b][None, :] * np.exp(-0.5 * z**2)).sum(1)
    density /= starts * sigma * math.sqrt(2 * math.pi)
    trace, trace_stderr = _mean_stderr(d * (weights * nodes).sum(1))
    return SpectralDensity(
        nodes=nodes,
        weights=weights,
        grid=grid,
        density=density,
        sigma=float(sigma),
        lambda_min=lo,
        lambda_max=hi,
        trace=trace,
        trace_stderr=trace_stderr,
        dim=d,
        hvps=op.count - count0,
        operator=op.name,
        wall_seconds=time.perf_counter() - t0,
    )
