"""Extreme eigenpairs by thick-restart Lanczos with full reorthogonalization, with certificates.

The Lanczos process builds an orthonormal basis V of the Krylov space
K_m(A, v₁) = span{v₁, A v₁, …, A^{m−1} v₁} one product at a time and the projection
T = Vᵀ A V; the eigenpairs (θᵢ, sᵢ) of T give Ritz pairs (θᵢ, yᵢ = V sᵢ) whose extreme
values converge first (Lanczos 1950; Saad 2011, ch. 6). Here

- every new vector is orthogonalized against the whole basis twice ("twice is enough",
  Giraud et al. 2005) in float64, and T is the explicit projection Vᵀ A V (the
  coefficients of that Gram–Schmidt), so a float32 Hessian loses no accuracy to lost
  orthogonality;
- when the basis is full, it restarts thickly (Wu & Simon 2000): it keeps the wanted
  Ritz vectors and their neighbours and continues from the residual direction, so
  memory stays at ``max_basis`` vectors of length d;
- convergence is tested on the free Lanczos bound ‖A yᵢ − θᵢ yᵢ‖ = β_m |e_mᵀ sᵢ|
  (A V = V T + β_m v_{m+1} e_mᵀ holds through thick restarts), and the returned pairs
  are then certified with one more product each: ``residuals`` are ‖A yᵢ − θᵢ yᵢ‖
  measured, not estimated (``certify=False`` reports the bound instead).

A pair is ``converged`` when ‖A y − θ y‖ ≤ tol·‖A‖, with ‖A‖ estimated by the largest
|Ritz value|. For a symmetric A each such θ lies within the residual of an eigenvalue
(Weyl), and within ‖r‖²/δ when the rest of the spectrum is δ away (Kato 1949; Parlett
1998, §11.7): ``error_estimates`` report min(‖r‖, ‖r‖²/δ) with δ estimated from the
other Ritz values.

Top and bottom pairs come from the same Krylov space (`extreme_eigenpairs`). A second
run on −A or on a shifted A − σI would build the identical space (Krylov spaces are
shift invariant), so it cannot converge faster; what matters is the restart, which
here keeps wanted vectors from both ends. Measured on the trained digits MLP
(`benchmarks/curvature.py`): top-5 alone 26 products, bottom-5 alone 137, both from one
run 142: the slower end's cost, not the sum. The most negative eigenvalues (−0.0147 …
−0.0132 beside λmax = 1.42) sit at the edge of the bulk, so they converge slowly; a
larger basis, not a shift, is what helps (see ``max_basis``).

Why single-vector and not block Lanczos: on CPU a block product ``hvp_many`` of b
vectors costs b single products (measured: 2.88 ms per vector in a block of 5 against
2.90 ms alone), and block Krylov spaces need more products for the same accuracy;
block methods pay off only where b products cost about one.

>>> import torch
>>> A = torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64))
>>> top = lanczos(A, 3)
>>> top.eigenvalues.round(6).tolist(), bool(top.converged.all())
([100.0, 99.0, 98.0], True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from losslab.curvature.operators import Operator, as_operator
from losslab.errors import UserError, check_choice, check_float, check_int
from losslab.store import register_result

__all__ = ["Eigenpairs", "extreme_eigenpairs", "lanczos"]

_WORK = torch.float64  # the basis, the projection and the Ritz vectors


@register_result
@dataclass
class Eigenpairs:
    """Extreme eigenpairs of a curvature operator with their certificates.

    ``eigenvalues`` [k] in order (descending for 'top', ascending for 'bottom'),
    ``vectors`` [k, d] (unit norm), ``residuals`` ‖A y − θ y‖ ('product': measured with
    one extra product per pair; 'bound': the Lanczos estimate), ``converged`` where the
    residual is ≤ ``tol``·``norm_estimate``, ``error_estimates`` min(r, r²/gap),
    ``hvps`` the products spent (certification included), ``steps`` Lanczos steps.
    """

    eigenvalues: np.ndarray
    vectors: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    error_estimates: np.ndarray
    which: str
    tol: float
    norm_estimate: float
    hvps: int
    steps: int
    restarts: int
    residual_source: str
    operator: str
    wall_seconds: float

    def summary(self) -> dict[str, Any]:
        return {
            "eigenvalues": [float(x) for x in self.eigenvalues],
            "max_relative_residual": float(self.residuals.max() / self.norm_estimate) if len(self.residuals) else 0.0,
            "converged": int(self.converged.sum()),
            "requested": len(self.eigenvalues),
            "hvps": self.hvps,
            "wall_seconds": round(self.wall_seconds, 3),
        }


def lanczos(
    A: Operator | torch.Tensor,
    k: int = 5,
    *,
    which: str = "top",
    tol: float = 1e-5,
    max_hvps: int | None = None,
    max_basis: int | None = None,
    start: torch.Tensor | Eigenpairs | None = None,
    seed: int = 0,
    certify: bool = True,
) -> Eigenpairs:
    """The k largest ('top') or most negative ('bottom') eigenpairs of a symmetric ``A``.

    Parameters
    ----------
    A : an `Operator` (`hessian_operator`, `ggn_operator`) or a dense symmetric tensor.
    k : number of pairs, 1 ≤ k ≤ d.
    tol : relative residual target, ‖A y − θ y‖ ≤ tol·‖A‖ (0 < tol < 1). Below ~100× the
        unit round-off of A's dtype (1e-5 is safe at float32) the products' own rounding
        error decides, and pairs may end unconverged.
    max_hvps : product budget (default 40·k + 400); the result says what converged.
    max_basis : vectors kept in memory (default: up to 160 within 128 MiB, at least 3k + 20).
    start : warm start: a vector [d], several [j, d] (their normalized sum starts the
        Krylov space) or earlier `Eigenpairs` (tracking along training).
    seed : seed of the random start vector (used when ``start`` is None).
    certify : measure the residuals with k extra products (default) instead of
        reporting the Lanczos bound.
    """
    check_choice(which, "which", "lanczos", ("top", "bottom"))
    check_int(k, "k", "lanczos", low=1)
    top, bottom = (k, 0) if which == "top" else (0, k)
    return _run(A, top, bottom, tol, max_hvps, max_basis, start, seed, certify, "lanczos")[0 if which == "top" else 1]


def extreme_eigenpairs(
    A: Operator | torch.Tensor,
    top: int = 5,
    bottom: int = 5,
    *,
    tol: float = 1e-5,
    max_hvps: int | None = None,
    max_basis: int | None = None,
    start: torch.Tensor | Eigenpairs | None = None,
    seed: int = 0,
    certify: bool = True,
) -> tuple[Eigenpairs, Eigenpairs]:
    """The ``top`` largest and ``bottom`` most negative eigenpairs from one Krylov space.

    Same parameters as `lanczos`; ``hvps`` of both results is the shared total.
    """
    return _run(A, top, bottom, tol, max_hvps, max_basis, start, seed, certify, "extreme_eigenpairs")


def _validate(
    op: Operator,
    top: int,
    bottom: int,
    tol: float,
    max_hvps: int | None,
    max_basis: int | None,
    owner: str,
) -> tuple[int, int]:
    d = op.dim
    for name, value in (("top", top), ("bottom", bottom)):
        check_int(value, "k" if owner == "lanczos" else name, owner, low=0, high=d)
    want = top + bottom
    if want < 1:
        raise UserError(f"{owner} needs at least one eigenpair: ask for top ≥ 1 or bottom ≥ 1.")
    if want > d:
        raise UserError(
            f"{owner} was asked for {want} eigenpairs but the operator has dimension {d}: ask for at most {d}."
        )
    check_float(tol, "tol", owner, low=0.0, high=1.0, low_open=True)
    if max_basis is None:
        max_basis = default_max_basis(want, d)
    check_int(max_basis, "max_basis", owner, low=min(d, want + 2))
    max_basis = min(max_basis, d)
    if max_hvps is None:
        max_hvps = 40 * want + 400
    check_int(max_hvps, "max_hvps", owner, low=want)
    return max_basis, max_hvps


def default_max_basis(want: int, d: int) -> int:
    """Basis vectors kept before a restart when ``want`` eigenpairs of a d × d operator are asked for.

    A larger basis restarts less and needs fewer products: bottom-5 of the digits MLP took
    332 products with 40 vectors, 177 with 100 and 137 with 160, and less wall time too
    (the products dominate). Up to 160 vectors, within 128 MiB of float64.
    """
    return min(d, max(3 * want + 20, min(160, (128 << 20) // (8 * d))))


def _start_vector(start: torch.Tensor | Eigenpairs | None, d: int, device: torch.device, seed: int) -> torch.Tensor:
    if isinstance(start, Eigenpairs):
        start = torch.as_tensor(start.vectors)
    if start is not None:
        S = torch.as_tensor(start).to(device, _WORK).reshape(-1, d) if torch.as_tensor(start).numel() % d == 0 else None
        if S is None:
            raise UserError(
                f"The 'start' vectors must have length {d} (the operator's dimension). "
                f"Got shape {tuple(torch.as_tensor(start).shape)}."
            )
        norms = S.norm(dim=1, keepdim=True)
        q = (S / norms.clamp_min(torch.finfo(_WORK).tiny)).sum(0)
        if bool(torch.isfinite(q).all()) and float(q.norm()) > 1e-8:
            return q / q.norm()
    g = torch.Generator().manual_seed(int(seed))
    q = torch.randn(d, generator=g, dtype=_WORK).to(device)
    return q / q.norm()


def _eigh(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of a small symmetric matrix with torch's LAPACK.

    Not numpy's: alternating numpy's OpenBLAS threads with torch's OpenMP threads every
    step made each small eigh cost ~10 ms instead of 0.2 ms on a busy 2-core machine
    (measured: 17.7 → 7.3 ms per Lanczos step on the digits MLP).
    """
    values, vectors = torch.linalg.eigh(torch.from_numpy(np.ascontiguousarray(T)))
    return values.numpy(), vectors.numpy()


def _orthogonalize(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Coefficients h of w on the orthonormal rows of ``basis``; w is replaced by w − basisᵀ h.

    Two passes of classical Gram–Schmidt restore orthogonality to working precision
    (Giraud, Langou, Rozložník & van den Eshof 2005).
    """
    h = basis @ w
    w -= h @ basis
    h2 = basis @ w
    w -= h2 @ basis
    return h + h2


def _run(
    A: Operator | torch.Tensor,
    top: int,
    bottom: int,
    tol: float,
    max_hvps: int | None,
    max_basis: int | None,
    start: torch.Tensor | Eigenpairs | None,
    seed: int,
    certify: bool,
    owner: str,
) -> tuple[Eigenpairs, Eigenpairs]:
    op = as_operator(A)
    max_basis, max_hvps = _validate(op, top, bottom, tol, max_hvps, max_basis, owner)
    t0, count0 = time.perf_counter(), op.count
    d, want = op.dim, top + bottom
    V = torch.zeros(max_basis, d, dtype=_WORK, device=op.device)
    T = np.zeros((max_basis, max_basis))
    q = _start_vector(start, d, op.device, seed)
    g = torch.Generator().manual_seed(int(seed) + 1)  # fresh directions after a breakdown
    m = steps = restarts = 0
    budget = max_hvps - (want if certify else 0)
    while True:
        V[m] = q
        w = op.matvec(q.to(op.dtype)).to(_WORK)
        steps += 1
        h = _orthogonalize(w, V[: m + 1]).cpu().numpy()
        T[: m + 1, m] = h
        T[m, : m + 1] = h
        m += 1
        beta = float(w.norm())
        theta, S = _eigh(T[:m, :m])
        scale = max(abs(theta[0]), abs(theta[-1]), np.finfo(np.float64).tiny)
        wanted = _wanted(m, top, bottom)
        bounds = beta * np.abs(S[-1, wanted])
        if m == d or (m >= want and bool((bounds <= tol * scale).all())) or steps >= max(budget, 1):
            break
        # A Krylov space that stopped growing (β ≈ 0) is invariant: continue with a fresh
        # random direction, so eigenvalues it cannot reach still get found.
        broke = beta <= 1e-12 * scale
        q = w / beta if not broke else None
        if m == max_basis:
            keep = _keep(theta, top, bottom, max_basis)
            V[: len(keep)] = torch.as_tensor(S[:, keep].T, device=op.device) @ V[:m]
            T[:] = 0.0
            T[np.arange(len(keep)), np.arange(len(keep))] = theta[keep]
            m, restarts = len(keep), restarts + 1
        if q is None:
            q = torch.randn(d, generator=g, dtype=_WORK).to(op.device)
            _orthogonalize(q, V[:m])
            q /= q.norm()
    Y = torch.as_tensor(S[:, wanted].T, device=op.device) @ V[:m]  # Ritz vectors, rows
    values = theta[wanted]
    if certify:
        AY = op.matmat(Y.to(op.dtype)).to(_WORK)
        residuals = (AY - torch.as_tensor(values, device=op.device)[:, None] * Y).norm(dim=1).cpu().numpy()
    else:
        residuals = bounds
    others = np.abs(values[:, None] - theta[None, :])
    others[np.arange(len(wanted)), wanted] = np.inf
    gap = others.min(axis=1) if m > 1 else np.full(len(wanted), np.inf)
    errors = np.minimum(residuals, residuals**2 / np.maximum(gap, np.finfo(np.float64).tiny))
    common = dict(
        tol=float(tol),
        norm_estimate=float(scale),
        hvps=op.count - count0,
        steps=steps,
        restarts=restarts,
        residual_source="product" if certify else "bound",
        operator=op.name,
        wall_seconds=time.perf_counter() - t0,
    )
    vectors = Y.to(op.dtype).cpu().numpy()

    def pairs(part: slice, which: str) -> Eigenpairs:
        return Eigenpairs(
            values[part].copy(),
            vectors[part].copy(),
            residuals[part].copy(),
            residuals[part] <= tol * scale,
            errors[part].copy(),
            which,
            **common,
        )  # type: ignore[arg-type]

    return pairs(slice(0, top), "top"), pairs(slice(top, top + bottom), "bottom")


def _wanted(m: int, top: int, bottom: int) -> np.ndarray:
    """Indices into ascending Ritz values: the top ones (descending), then the bottom ones.

    While the basis is smaller than top + bottom the two ends overlap; that only
    happens before convergence is possible.
    """
    high = np.arange(m - 1, m - 1 - min(top, m), -1)
    low = np.arange(min(bottom, m))
    return np.concatenate([high, low]).astype(np.int64)


def _keep(theta: np.ndarray, top: int, bottom: int, max_basis: int) -> np.ndarray:
    """Ritz vectors kept at a thick restart: the wanted ones and half the free room beside them.

    Keeping neighbours of the wanted pairs preserves most of the Krylov information
    (Wu & Simon 2000 keep about half the basis); the rest of the room is rebuilt.
    """
    m, want = len(theta), top + bottom
    extra = max(0, (max_basis - want) // 2)
    n_top = min(m, top + (extra * top + want - 1) // want) if top else 0
    n_bottom = min(m - n_top, bottom + (extra * bottom + want - 1) // want) if bottom else 0
    keep = np.concatenate([np.arange(m - n_top, m), np.arange(n_bottom)])
    return np.unique(keep)
