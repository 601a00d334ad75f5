"""Stochastic trace estimators with error estimates and a stopping rule on that error.

For a symmetric A on R^d and probes z with E[z zᵀ] = I, zᵀ A z is an unbiased sample
of tr(A). Three estimators, each returning the estimate, its error estimate, the
products spent and the running history:

- `hutchinson` (Hutchinson 1989; Rademacher probes, Var = 2 Σ_{i≠j} A_ij²): the mean
  of independent samples, standard error = sample std / √N;
- `hutchpp` (Meyer, Musco, Musco & Woodruff 2021): tr(QᵀAQ) of a rank-r sketch
  Q = orth(A S) plus Hutchinson on the deflated (I − QQᵀ) A (I − QQᵀ), whose samples
  are independent given Q, so its standard error is the error of the whole estimate;
- `xtrace` (Epperly, Tropp & Webber 2024): every test vector is used both for the
  low-rank sketch and, left out of it, as a Hutchinson probe on the deflated
  remainder; the s leave-one-out estimates are averaged and their spread gives the
  error estimate std/√s. We use the basic exchangeable estimator with Rademacher
  test vectors, computed from A Ω and A Q (2 products per test vector).
- `auto_trace`: Hutchinson, or Hutch++ when its sketch pays. The sketch's first
  products A S are Hutchinson samples too; from them it estimates how much of ‖A‖²_F a
  sketch would leave (leave-one-out, no extra products) and the samples the error target
  needs, and spends the second half of the sketch only when deflation saves more products
  than it costs. On a flat spectrum (a trained ResNet's Hessian) that is Hutchinson at no
  extra cost; on a few dominant eigenvalues it is Hutch++.

Each stops once its error estimate is ≤ ``tol``·|estimate| (or ≤ ``atol``), after at
least ``min_samples`` samples so that the error estimate itself is trustworthy, or
when ``max_hvps`` is spent; ``converged`` says which. Stopping on the change between
successive estimates instead (PyHessian) stops early whenever two noisy samples
happen to agree.

>>> import torch
>>> A = torch.diag(torch.linspace(0.0, 1.0, 200, dtype=torch.float64)) ** 8
>>> est = xtrace(A, tol=1e-3)
>>> abs(est.estimate - float(A.trace())) < 5 * est.stderr + 1e-12, est.converged
(True, True)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from losslab.curvature.operators import Operator, as_operator
from losslab.errors import check_float, check_int
from losslab.store import register_result, summary_of

__all__ = ["TraceEstimate", "auto_trace", "exact_trace", "hutchinson", "hutchpp", "xtrace"]

_WORK = torch.float64


@register_result
@dataclass
class TraceEstimate:
    """tr(A) estimated by ``method`` with its error estimate ``stderr`` (one standard error).

    ``history_*`` follow the estimate as products were spent; ``groups`` maps a
    parameter group to [estimate, stderr] of its diagonal block (Hutchinson only);
    ``choice`` says why `auto_trace` picked ``method`` (empty for the others).
    """

    estimate: float
    stderr: float
    method: str
    hvps: int
    samples: int
    converged: bool
    tol: float
    atol: float
    history_hvps: np.ndarray
    history_estimate: np.ndarray
    history_stderr: np.ndarray
    operator: str
    wall_seconds: float
    groups: dict[str, list[float]] = field(default_factory=dict)
    choice: str = ""

    @property
    def relative_error(self) -> float:
        """The error estimate relative to |estimate|."""
        return self.stderr / abs(self.estimate) if self.estimate else math.inf

    def summary(self) -> dict[str, Any]:
        chosen = {"choice": self.choice} if self.choice else {}
        return summary_of(self, "method", "estimate", "stderr", "hvps", "converged", "wall_seconds", **chosen)


def exact_trace(A: Operator | torch.Tensor, *, block: int = 10) -> TraceEstimate:
    """tr(A) = Σ_i e_iᵀ A e_i from the d unit vectors, ``block`` at a time (d products).

    Exact up to the rounding of the products (``stderr`` 0): the choice for small d, where a
    stochastic estimate would cost as much and still carry an error bar.

    >>> A = torch.diag(torch.arange(5.0, dtype=torch.float64))
    >>> exact_trace(A).estimate, exact_trace(A).hvps
    (10.0, 5)
    """
    op = as_operator(A)
    check_int(block, "block", "exact_trace", low=1)
    track = _Tracker(op, "exact", 0.0, 0.0, op.dim, 1)
    total = 0.0
    for start in range(0, op.dim, block):
        rows = torch.arange(min(block, op.dim - start), device=op.device)
        E = torch.zeros(len(rows), op.dim, dtype=op.dtype, device=op.device)
        E[rows, start + rows] = 1
        total += float(op.matmat(E).to(_WORK).diagonal(offset=start).sum())
        track.add(total, math.inf if start + block < op.dim else 0.0)
    return track.result(op.dim, True)


def _rademacher(count: int, d: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    signs = torch.randint(0, 2, (count, d), generator=generator, dtype=torch.int8)
    return (signs.to(_WORK) * 2 - 1).to(device)


def _check(owner: str, tol: float, atol: float, max_hvps: int, min_samples: int, block: int) -> None:
    check_float(tol, "tol", owner, low=0.0, high=1.0, low_open=True)
    check_float(atol, "atol", owner, low=0.0)
    check_int(min_samples, "min_samples", owner, low=2)
    check_int(block, "block", owner, low=1)
    check_int(max_hvps, "max_hvps", owner, low=2)


class _Tracker:
    """History, the stopping rule and the result, shared by the three estimators."""

    def __init__(self, op: Operator, method: str, tol: float, atol: float, max_hvps: int, min_samples: int) -> None:
        self.op, self.method, self.tol, self.atol = op, method, tol, atol
        self.max_hvps, self.min_samples = max_hvps, min_samples
        self.t0, self.count0 = time.perf_counter(), op.count
        self.hvps: list[int] = []
        self.estimates: list[float] = []
        self.stderrs: list[float] = []

    @property
    def spent(self) -> int:
        return self.op.count - self.count0

    def add(self, estimate: float, stderr: float) -> None:
        self.hvps.append(self.spent)
        self.estimates.append(estimate)
        self.stderrs.append(stderr)

    def precise(self, estimate: float, stderr: float, samples: int) -> bool:
        return samples >= self.min_samples and stderr <= max(self.tol * abs(estimate), self.atol)

    def next_block(self, block: int, estimate: float, stderr: float, samples: int) -> int:
        """Probes to draw next: ``block``, or as few as the error estimate says the rule needs.

        The standard error falls as 1/√N, so N·(stderr/target)² samples in all are expected to
        meet the target; drawing only the missing ones (at least one) stops within a probe or
        two of the first N that meets the rule, where whole blocks overshoot by up to block − 1.
        """
        size = min(block, self.max_hvps - self.spent)
        target = max(self.tol * abs(estimate), self.atol)
        if samples >= self.min_samples and math.isfinite(stderr) and target > 0:
            size = min(size, max(1, math.ceil(samples * (stderr / target) ** 2) - samples))
        return size

    def result(
        self, samples: int, converged: bool, groups: dict[str, list[float]] | None = None, choice: str = ""
    ) -> TraceEstimate:
        return TraceEstimate(
            estimate=self.estimates[-1],
            stderr=self.stderrs[-1],
            method=self.method,
            hvps=self.spent,
            samples=samples,
            converged=converged,
            tol=self.tol,
            atol=self.atol,
            history_hvps=np.asarray(self.hvps, dtype=np.int64),
            history_estimate=np.asarray(self.estimates),
            history_stderr=np.asarray(self.stderrs),
            operator=self.op.name,
            wall_seconds=time.perf_counter() - self.t0,
            groups=groups or {},
            choice=choice,
        )


def _mean_stderr(samples: torch.Tensor) -> tuple[float, float]:
    n = len(samples)
    mean = float(samples.mean())
    return mean, (float(samples.std(correction=1)) / math.sqrt(n) if n > 1 else math.inf)


def hutchinson(
    A: Operator | torch.Tensor,
    *,
    tol: float = 1e-2,
    atol: float = 0.0,
    max_hvps: int = 1000,
    min_samples: int = 10,
    block: int = 10,
    seed: int = 0,
    groups: dict[str, slice] | None = None,
) -> TraceEstimate:
    """Hutchinson's estimator mean(zᵀ A z) over Rademacher probes z, with its standard error.

    Probes are drawn ``block`` at a time (one ``matmat``), or as many as the error estimate
    says are still missing when that is fewer, until the standard error is
    ≤ max(tol·|estimate|, atol) with at least ``min_samples`` probes, or ``max_hvps`` are
    spent. ``groups`` (name → slice of coordinates) also estimates the trace of each
    diagonal block from the same probes: z_gᵀ (A z)_g has mean tr(A_gg).
    """
    op = as_operator(A)
    _check("hutchinson", tol, atol, max_hvps, min_samples, block)
    track = _Tracker(op, "hutchinson", tol, atol, max_hvps, min_samples)
    g = torch.Generator().manual_seed(int(seed))
    count, converged, parts = _probe(op, track, g, block, max_hvps, groups=groups)
    return track.result(count, converged, parts)


def _probe(
    op: Operator,
    track: _Tracker,
    g: torch.Generator,
    block: int,
    max_hvps: int,
    *,
    offset: float = 0.0,
    deflate: torch.Tensor | None = None,
    groups: dict[str, slice] | None = None,
    samples: torch.Tensor | None = None,
) -> tuple[int, bool, dict[str, list[float]]]:
    """Hutchinson's loop: Rademacher probes ``block`` at a time until the tracker's rule holds.

    Probes are projected off the orthonormal rows of ``deflate`` (Hutch++'s sketch) and
    the estimate is ``offset`` + the mean of zᵀ A z, continuing from ``samples`` (values
    of zᵀ A z already drawn) when given. Returns (probes used, converged, (mean, standard
    error) of each group's diagonal block).
    """
    samples = torch.zeros(0, dtype=_WORK) if samples is None else samples
    parts = {name: torch.zeros(0, dtype=_WORK) for name in groups or {}}
    converged, mean, stderr = False, 0.0, math.inf
    if len(samples):
        mean, stderr = _mean_stderr(samples)
        track.add(offset + mean, stderr)
        converged = track.precise(offset + mean, stderr, len(samples))
    while track.spent < max_hvps and not converged:
        Z = _rademacher(track.next_block(block, offset + mean, stderr, len(samples)), op.dim, g, op.device)
        if deflate is not None:
            Z = Z - (Z @ deflate.T) @ deflate
        AZ = op.matmat(Z.to(op.dtype)).to(_WORK)
        samples = torch.cat([samples, (Z * AZ).sum(1).cpu()])
        for name, where in (groups or {}).items():
            parts[name] = torch.cat([parts[name], (Z[:, where] * AZ[:, where]).sum(1).cpu()])
        mean, stderr = _mean_stderr(samples)
        track.add(offset + mean, stderr)
        if track.precise(offset + mean, stderr, len(samples)):
            converged = True
            break
    return len(samples), converged, {name: list(_mean_stderr(values)) for name, values in parts.items()}


def _orthonormal_rows(Y: torch.Tensor, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Extend the orthonormal rows Q by the rows of Y: (new rows, coefficients on Q, R of the rest).

    Y = C Q + R_newᵀ Q_new, with C [b, |Q|] and R_new upper triangular (block
    Gram–Schmidt, twice, then a thin QR).
    """
    C = Y @ Q.T
    rest = Y - C @ Q
    C2 = rest @ Q.T
    rest = rest - C2 @ Q
    Q_new, R_new = torch.linalg.qr(rest.T)
    return Q_new.T, C + C2, R_new


def hutchpp(
    A: Operator | torch.Tensor,
    *,
    rank: int = 20,
    tol: float = 1e-2,
    atol: float = 0.0,
    max_hvps: int = 1000,
    min_samples: int = 10,
    block: int = 10,
    seed: int = 0,
) -> TraceEstimate:
    """Hutch++: exact trace on a rank-``rank`` sketch, Hutchinson on the deflated rest.

    The sketch costs 2·rank products (A S, then A Q); the deflated Hutchinson part then
    runs with the same stopping rule as `hutchinson`. When the sketch captures the
    whole range of A (rank ≥ rank(A)) the deflated samples are zero and the estimate
    is exact.
    """
    track, g, S, Y = _sketch("hutchpp", A, rank, tol, atol, max_hvps, min_samples, block, seed, low=1)
    Q, _, _ = _orthonormal_rows(Y, torch.zeros(0, track.op.dim, dtype=_WORK, device=Y.device))
    count, converged = _deflated(track, g, Q, block, max_hvps)
    return track.result(count, converged)


def _sketch(
    owner: str, A: Operator | torch.Tensor, rank: int, tol: float, atol: float, max_hvps: int,
    min_samples: int, block: int, seed: int, *, low: int,
) -> tuple[_Tracker, torch.Generator, torch.Tensor, torch.Tensor]:  # fmt: skip
    """The checks, the tracker and the sketch's first half: Rademacher rows S and Y = A S."""
    op = as_operator(A)
    _check(owner, tol, atol, max_hvps, min_samples, block)
    rank = check_int(rank, "rank", owner, low=low)
    rank = min(rank, op.dim, max(low, (max_hvps - min_samples) // 2))
    track = _Tracker(op, owner, tol, atol, max_hvps, min_samples)
    g = torch.Generator().manual_seed(int(seed))
    S = _rademacher(rank, op.dim, g, op.device)
    return track, g, S, op.matmat(S.to(op.dtype)).to(_WORK)


def _deflated(track: _Tracker, g: torch.Generator, Q: torch.Tensor, block: int, max_hvps: int) -> tuple[int, bool]:
    """Hutch++ from the orthonormal rows Q of the sketch's images: tr(QᵀAQ), then deflated probes."""
    op = track.op
    AQ = op.matmat(Q.to(op.dtype)).to(_WORK)
    low_rank = float((Q * AQ).sum())
    count, converged, _ = _probe(op, track, g, block, max_hvps, offset=low_rank, deflate=Q)
    if not track.estimates:  # the whole budget went into the sketch
        track.add(low_rank, math.inf)
    return count, converged


def _left_by_sketch(Y: torch.Tensor, R: torch.Tensor) -> float:
    """Estimated fraction of ‖A‖²_F outside a sketch, from its images Y = A S alone (rows; Yᵀ = Q R).

    Each image left out of the span of the others, ‖(I − Q₍ᵢ₎Q₍ᵢ₎ᵀ) A sᵢ‖², is an unbiased
    sample of ‖(I − Q₍ᵢ₎Q₍ᵢ₎ᵀ) A‖²_F, since sᵢ is independent of Q₍ᵢ₎; it equals
    1 / (G⁻¹)ᵢᵢ for the Gram matrix G = Y Yᵀ = RᵀR. ‖A sᵢ‖² samples ‖A‖²_F. The ratio of the
    means is the fraction a rank-(s − 1) sketch leaves, a slight overestimate of rank s's.
    """
    total = float(Y.square().sum(1).mean())
    if len(Y) < 2 or total == 0.0:
        return 0.0 if total == 0.0 else 1.0
    diagonal = R.diagonal().abs()
    if bool(diagonal.min() <= 1e-10 * diagonal.max()):
        return 0.0  # an image lies in the span of the others: the sketch holds range(A)
    inverse = torch.linalg.solve_triangular(R, torch.eye(len(R), dtype=R.dtype, device=R.device), upper=True)
    left = 1.0 / inverse.square().sum(1)  # 1 / (G⁻¹)ᵢᵢ = 1 / ‖row i of R⁻¹‖²
    return min(1.0, float(left.mean()) / total)


def auto_trace(
    A: Operator | torch.Tensor,
    *,
    rank: int = 20,
    tol: float = 1e-2,
    atol: float = 0.0,
    max_hvps: int = 1000,
    min_samples: int = 10,
    block: int = 10,
    seed: int = 0,
) -> TraceEstimate:
    """Hutchinson, or Hutch++ when its sketch saves more products than it costs.

    Draws ``rank`` Rademacher probes S and computes Y = A S: the samples sᵢᵀ A sᵢ are
    Hutchinson's, and ρ = `_left_by_sketch` (Y) estimates the fraction of ‖A‖²_F that a
    sketch would leave to the deflated probes. With M = min(N, ``max_hvps``), N the samples
    Hutchinson needs for the target at the samples' variance, Hutch++ costs ≈ 2·rank + ρ·M
    products where Hutchinson costs M (the variance of a deflated sample is taken as ρ times
    a plain one's). Hutch++ is chosen when that is smaller, and then continues from Y as
    `hutchpp` does (A Q, deflated probes); otherwise Hutchinson continues from the samples
    it has, so a flat spectrum costs no more than `hutchinson`. Either way the error
    estimate is that estimator's own; ``method`` names it and ``choice`` gives the figures.
    """
    track, g, S, Y = _sketch("auto_trace", A, rank, tol, atol, max_hvps, min_samples, block, seed, low=2)
    rank = len(S)
    samples = (S * Y).sum(1).cpu()
    Q, _, R = _orthonormal_rows(Y, torch.zeros(0, track.op.dim, dtype=_WORK, device=Y.device))
    left = _left_by_sketch(Y, R)
    target = max(tol * abs(float(samples.mean())), atol)
    variance = float(samples.var(correction=1))
    needed = max(min_samples, math.ceil(variance / target**2)) if target > 0 else math.inf
    M = min(needed, max_hvps)
    sketch = 2 * rank + left * M < M
    track.method = "hutchpp" if sketch else "hutchinson"
    choice = (
        f"auto: a rank-{rank} sketch leaves {left:.2f} of ‖A‖²_F; Hutch++ ≈ {2 * rank + left * M:.0f} products "
        f"against Hutchinson's {M:.0f} → {track.method}"
    )
    if sketch:
        count, converged = _deflated(track, g, Q, block, max_hvps)
    else:
        count, converged, _ = _probe(track.op, track, g, block, max_hvps, samples=samples)
    return track.result(count, converged, choice=choice)


def xtrace(
    A: Operator | torch.Tensor,
    *,
    tol: float = 1e-2,
    atol: float = 0.0,
    max_hvps: int = 1000,
    min_samples: int = 10,
    block: int = 10,
    seed: int = 0,
) -> TraceEstimate:
    """XTrace (Epperly, Tropp & Webber 2024): leave-one-out Hutch++ on every test vector.

    With test vectors ω₁…ω_s, Y = A Ω = Q R and Q₍ᵢ₎ an orthonormal basis of
    {A ω_j : j ≠ i}, each

        tᵢ = tr(Q₍ᵢ₎ᵀ A Q₍ᵢ₎) + ωᵢᵀ (I − Q₍ᵢ₎Q₍ᵢ₎ᵀ) A (I − Q₍ᵢ₎Q₍ᵢ₎ᵀ) ωᵢ

    is unbiased (ωᵢ is independent of Q₍ᵢ₎). Q₍ᵢ₎ is Q with the direction ŝᵢ ∝ R⁻ᵀeᵢ
    removed, so every tᵢ follows from Y, A Q and small s×s algebra. The estimate is
    mean(tᵢ), its error estimate std(tᵢ)/√s. Test vectors are added ``block`` at a time
    (2·block products) until the error estimate meets the tolerance.

    The tᵢ share most of their sketch, so std/√s is a heuristic: over 40 seeds its
    z-scores had RMS 1.0–1.5 on full-rank spectra, but 3.9 when the test vectors nearly
    spanned range(A) (100 vectors, rank 103). Hutch++'s error estimate, from samples that
    are independent given the sketch, stayed near 1 in every case; `auto_trace` (the
    default of ``losslab hessian --trace``) chooses between it and Hutchinson.
    """
    op = as_operator(A)
    _check("xtrace", tol, atol, max_hvps, min_samples, block)
    track = _Tracker(op, "xtrace", tol, atol, max_hvps, min_samples)
    g = torch.Generator().manual_seed(int(seed))
    d, dev = op.dim, op.device
    Omega = torch.zeros(0, d, dtype=_WORK, device=dev)
    Y = torch.zeros(0, d, dtype=_WORK, device=dev)
    Q = torch.zeros(0, d, dtype=_WORK, device=dev)
    Z = torch.zeros(0, d, dtype=_WORK, device=dev)  # A Q, rows
    R = torch.zeros(0, 0, dtype=_WORK, device=dev)  # Yᵀ = Qᵀ R
    converged = False
    while track.spent + 2 <= max_hvps:
        b = min(block, (max_hvps - track.spent) // 2, d - len(Q))
        if b < 1:
            break
        W = _rademacher(b, d, g, dev)
        Y_new = op.matmat(W.to(op.dtype)).to(_WORK)
        Q_new, C, R_new = _orthonormal_rows(Y_new, Q)
        # Images of random vectors that fall into the span of earlier ones mean the sketch
        # holds all of range(A); then A QQᵀ = A and tr A = tr(QᵀAQ) exactly.
        floor = 1e-10 * float(Y_new.norm(dim=1).max())
        if bool(R_new.diagonal().abs().min() <= floor):
            # The new rows of a rank-deficient QR are not orthogonal to the old Q; an SVD of
            # the projected images gives an orthonormal basis of their span that is.
            U, S, _ = torch.linalg.svd((Y_new - C @ Q).T, full_matrices=False)
            basis = U[:, S > floor].T
            inside = float((Q * Z).sum())
            if len(basis):
                inside += float((basis * op.matmat(basis.to(op.dtype)).to(_WORK)).sum())
            track.add(inside, 0.0)
            Omega = torch.cat([Omega, W])
            converged = True
            break
        Z = torch.cat([Z, op.matmat(Q_new.to(op.dtype)).to(_WORK)])
        s_old = len(Q)
        R = torch.cat(
            [
                torch.cat([R, C.T], 1),
                torch.cat([torch.zeros(len(Q_new), s_old, dtype=_WORK, device=dev), R_new], 1),
            ]
        )
        Q, Omega, Y = torch.cat([Q, Q_new]), torch.cat([Omega, W]), torch.cat([Y, Y_new])
        samples = _leave_one_out(Omega, Y, Q, Z, R)
        estimate, stderr = _mean_stderr(samples.cpu())
        track.add(estimate, stderr)
        if track.precise(estimate, stderr, len(samples)):
            converged = True
            break
    if not track.estimates:
        track.add(math.nan, math.inf)
    return track.result(len(Omega), converged)


def _leave_one_out(
    Omega: torch.Tensor, Y: torch.Tensor, Q: torch.Tensor, Z: torch.Tensor, R: torch.Tensor
) -> torch.Tensor:
    """The s estimates tᵢ of `xtrace` (rows: Ω, Y = AΩ, orthonormal Q, Z = AQ; Yᵀ = QᵀR)."""
    H = Q @ Z.T
    H = (H + H.T) / 2
    eye = torch.eye(len(R), dtype=_WORK, device=R.device)
    S = torch.linalg.solve_triangular(R, eye, upper=True).T  # column i ∝ R⁻ᵀ eᵢ
    S = S / S.norm(dim=0, keepdim=True)
    W = Omega @ Q.T  # row i: coefficients of ωᵢ on Q
    sw = (S.T * W).sum(1)  # ŝᵢᵀ wᵢ
    C = W - S.T * sw[:, None]  # coefficients of Q₍ᵢ₎Q₍ᵢ₎ᵀ ωᵢ
    U = Omega - C @ Q  # (I − Q₍ᵢ₎Q₍ᵢ₎ᵀ) ωᵢ
    AU = Y - C @ Z
    inside = H.trace() - ((S.T @ H) * S.T).sum(1)  # tr(Q₍ᵢ₎ᵀ A Q₍ᵢ₎) = tr H − ŝᵢᵀ H ŝᵢ
    return inside + (U * AU).sum(1)
