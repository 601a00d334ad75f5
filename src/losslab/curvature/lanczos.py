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
other Ritz values (Ritz values within the residuals of each other count as one cluster).

A converged pair is a true eigenpair but not necessarily the k-th: single-vector Krylov
methods can miss members of a cluster and copies of a repeated eigenvalue (issue 12).
A pair is ``certified`` only when also

- complete: the pairs found are deflated (moved to an interior Ritz value σ) and a
  Lanczos run from an independent random start looks for an eigenvalue beyond the k-th;
  one found is added and the search repeats (a missed eigenvalue survives only if the
  random start is nearly orthogonal to its eigenvector). Measured against the cheaper
  alternatives for the same guarantee: a block Lanczos needs block ≥ the multiplicity,
  unknown in advance, and b products per step; spectrum slicing needs factorizations of
  A − σI, which a Hessian operator does not offer. On clusters of 2–3 copies 1e-3 apart
  the deflated restart cost 1.45× the products of the single run (116 → 170, d = 300);
- accurate at its end: its error bound is within tol of the size of the eigenvalues asked
  for at that end (`end_target`), not only of ‖A‖ — near a minimum |λmin| ≪ λmax;
- measured against exact products: below float64 the returned vectors are multiplied once
  by the operator's float64 twin (``Operator.reference``), so the residuals and bounds
  include the products' own rounding (``rounding``; ``exact_residuals``).

``certified`` is per pair, ``all_certified`` for the result, and ``reason`` says why not.

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
>>> top.eigenvalues.round(6).tolist(), bool(top.converged.all()), top.all_certified, top.reason
([100.0, 99.0, 98.0], True, True, '')
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
    residual is ≤ ``tol``·``norm_estimate``, ``error_estimates`` min(r, r²/gap) with r
    measured against float64 products (plus |θ − yᵀAy| there), ``hvps`` the products spent
    (certification and completeness check included; float64 ones in ``reference_hvps``),
    ``steps`` Lanczos steps. ``certified`` per pair and ``reason`` (empty when all are
    certified): see the module docstring; ``rounding`` is the largest ‖(A₃₂ − A₆₄) y‖
    measured (0 at float64, NaN when not measured).
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
    certified: np.ndarray | None = None
    reason: str = ""
    rounding: float = float("nan")
    exact_residuals: np.ndarray | None = None
    reference_hvps: int = 0
    completeness_rounds: int = 0

    @property
    def all_certified(self) -> bool:
        """Every requested pair certified (see ``reason`` when not)."""
        return self.certified is not None and bool(np.all(self.certified))

    def summary(self) -> dict[str, Any]:
        return {
            "eigenvalues": [float(x) for x in self.eigenvalues],
            "max_relative_residual": float(self.residuals.max() / self.norm_estimate) if len(self.residuals) else 0.0,
            "converged": int(self.converged.sum()),
            "certified": self.all_certified,
            "certified_pairs": int(np.sum(self.certified)) if self.certified is not None else 0,
            "reason": self.reason,
            "product_rounding": None if self.rounding != self.rounding else self.rounding,
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
    complete: bool = True,
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
        reporting the Lanczos bound (then nothing is ``certified``).
    complete : run the completeness check before certifying (default).
    """
    check_choice(which, "which", "lanczos", ("top", "bottom"))
    check_int(k, "k", "lanczos", low=1)
    top, bottom = (k, 0) if which == "top" else (0, k)
    result = _run(A, top, bottom, tol, max_hvps, max_basis, start, seed, certify, "lanczos", complete)
    return result[0 if which == "top" else 1]


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
    complete: bool = True,
) -> tuple[Eigenpairs, Eigenpairs]:
    """The ``top`` largest and ``bottom`` most negative eigenpairs from one Krylov space.

    Same parameters as `lanczos`; ``hvps`` of both results is the shared total.
    """
    return _run(A, top, bottom, tol, max_hvps, max_basis, start, seed, certify, "extreme_eigenpairs", complete)


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


def _krylov(
    op: Operator,
    top: int,
    bottom: int,
    tol: float,
    budget: int,
    max_basis: int,
    q: torch.Tensor,
    seed: int,
    known: np.ndarray | None = None,
) -> dict[str, Any]:
    """Thick-restart Lanczos until the wanted Ritz pairs meet the Lanczos bound or ``budget`` is spent.

    ``known`` are eigenvalues outside this operator's reach (pairs deflated out of it) that
    still count as neighbours in the gaps of the r²/δ estimates.

    Returns the wanted Ritz values (top descending, then bottom ascending), their vectors
    [w, d] in float64, the bounds β|e_mᵀs|, all Ritz values of the last basis, and the counts.
    """
    d, want = op.dim, top + bottom
    V = torch.zeros(max_basis, d, dtype=_WORK, device=op.device)
    T = np.zeros((max_basis, max_basis))
    g = torch.Generator().manual_seed(int(seed) + 1)  # fresh directions after a breakdown
    m = steps = restarts = 0
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
        neighbours = theta if known is None else np.concatenate([theta, known])
        if (
            m == d
            or (m >= want and _done(theta[wanted], bounds, neighbours, top, tol, scale))
            or steps >= max(budget, 1)
        ):
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
    return {
        "values": theta[wanted],
        "vectors": Y,
        "bounds": bounds,
        "ritz": theta,
        "scale": scale,
        "steps": steps,
        "restarts": restarts,
        "exhausted": m == d,
    }


def end_target(values: np.ndarray, tol: float, scale: float) -> float:
    """The eigenvalue error certified at one end: tol relative to the eigenvalues asked for there.

    Relative to ‖A‖ alone, the bottom of a Hessian near a minimum (|λmin| ≈ 1e-2·λmax) would
    be certified only to 1e-3 of its own size, less than the gaps in its clusters. Below
    1e-3·‖A‖ (the saddle index's default τ) eigenvalues are ranked against that floor instead.
    """
    size = float(np.abs(values).max()) if len(values) else 0.0
    return tol * max(size, 1e-3 * scale)


def _done(values: np.ndarray, bounds: np.ndarray, ritz: np.ndarray, top: int, tol: float, scale: float) -> bool:
    """Converged (bounds ≤ tol·‖A‖) and each end's error estimate min(b, b²/δ) within its `end_target`."""
    if not bool((bounds <= tol * scale).all()):
        return False
    errors = _error_bounds(values, bounds, ritz)
    for part in (slice(0, top), slice(top, len(values))):
        if len(values[part]) and not bool((errors[part] <= end_target(values[part], tol, scale)).all()):
            return False
    return True


def _deflated(op: Operator, Z: torch.Tensor, sigma: float) -> Operator:
    """B = P A P + σ ZᵀZ with P = I − ZᵀZ (Z orthonormal rows): A with the found directions moved to σ.

    With σ inside the spectrum, the extreme eigenpairs of B are those of A that Z does not
    hold, so a Lanczos run on B from a fresh start looks for the ones the first run missed.
    """

    def matmat(W: torch.Tensor) -> torch.Tensor:
        W = W.to(_WORK)
        inside = W @ Z.T
        PW = W - inside @ Z
        APW = op.matmat(PW.to(op.dtype)).to(_WORK)
        return APW - (APW @ Z.T) @ Z + sigma * inside @ Z

    return Operator(matmat, op.dim, dtype=_WORK, device=op.device, name=f"{op.name} deflated")


def _orthonormal_rows(Y: torch.Tensor) -> torch.Tensor:
    Q, _ = torch.linalg.qr(Y.T)
    return Q.T.contiguous()


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
    complete: bool = True,
) -> tuple[Eigenpairs, Eigenpairs]:
    op = as_operator(A)
    max_basis, max_hvps = _validate(op, top, bottom, tol, max_hvps, max_basis, owner)
    t0, count0, reference0 = time.perf_counter(), op.count, op.reference_count
    d, want = op.dim, top + bottom
    q = _start_vector(start, d, op.device, seed)
    # Products kept back: one per pair for the final Rayleigh–Ritz step, and room for a check.
    final = want + 2 if certify else 0
    reserve = min(want + 20, (max_hvps - final) // 3) if complete else 0
    main = _krylov(op, top, bottom, tol, max(1, max_hvps - final - reserve), max_basis, q, seed)
    steps, restarts, scale = main["steps"], main["restarts"], main["scale"]
    triples = list(zip(main["values"].tolist(), main["vectors"], main["bounds"].tolist(), strict=True))
    found = {"top": triples[:top], "bottom": triples[top:]}  # (Ritz value, vector, Lanczos bound)
    wanted_n = {"top": top, "bottom": bottom}
    sign = {"top": 1.0, "bottom": -1.0}
    status = {end: ("checked" if main["exhausted"] else "unchecked") for end in found if wanted_n[end]}
    notes: dict[str, str] = {}
    if not complete:
        notes = {end: "completeness not checked (complete=False)" for end in status}
    rounds = 0
    # Completeness (issue 12): a converged Ritz pair is a true eigenpair but not necessarily the
    # k-th. Deflate what was found and search again from an independent random start; an
    # eigenvalue beyond the k-th found one is a missed pair: add it and search again.
    while complete and any(v == "unchecked" for v in status.values()):
        # keep back one product per pair found so far (+2 this round may add) for the final step
        found_now = sum(len(pairs) for pairs in found.values())
        left = max_hvps - (found_now + 2 if certify else 0) - (op.count - count0)
        ask = [end for end, v in status.items() if v == "unchecked"]
        if left < 4:
            for end in ask:
                status[end], notes[end] = (
                    "failed",
                    "the product budget ran out before the completeness check (raise max_hvps)",
                )
            break
        Z = _orthonormal_rows(torch.stack([y for end in found for _, y, _ in found[end]]))
        # σ must not be extreme among the eigenvalues not found. By interlacing (Parlett 1998,
        # Thm 10.1.1) the (b+1)-th smallest Ritz value is ≥ λ_{b+1} and the (t+1)-th largest is
        # ≤ the (t+1)-th largest eigenvalue, so a Ritz value between those two lies within the
        # unfound spectrum's range (the midpoint of the range need not: a spiked spectrum).
        ritz = main["ritz"]
        low, high = bottom, len(ritz) - 1 - top
        sigma = float(ritz[(low + high) // 2]) if low <= high else float((ritz[0] + ritz[-1]) / 2)
        g = torch.Generator().manual_seed(int(seed) + 7919 * (rounds + 1))
        q = torch.randn(d, generator=g, dtype=_WORK).to(op.device)
        q = q - (q @ Z.T) @ Z
        q /= q.norm()
        n_top, n_bottom = int("top" in ask), int("bottom" in ask)
        check = _krylov(
            _deflated(op, Z, sigma),
            n_top,
            n_bottom,
            tol,
            left,
            min(d, default_max_basis(n_top + n_bottom, d)),
            q,
            seed + rounds + 1,
            known=np.array([v for end in found for v, _, _ in found[end]]),
        )
        steps, rounds = steps + check["steps"], rounds + 1
        for i, end in enumerate(ask):
            value, vector, bound = float(check["values"][i]), check["vectors"][i], float(check["bounds"][i])
            kth = sorted((v for v, _, _ in found[end]), key=lambda v: -sign[end] * v)[wanted_n[end] - 1]
            if sign[end] * (value - kth) > tol * scale:  # beyond the k-th: a pair the first run missed
                found[end].append((value, vector, bound))
            elif bound <= tol * scale or check["exhausted"]:  # converged on the side of the k-th
                status[end] = "checked"
            else:
                status[end] = "failed"
                notes[end] = "the completeness check did not converge within the product budget (raise max_hvps)"
    # Rayleigh–Ritz on everything found at each end: the returned pairs, their measured residuals.
    ends: dict[str, dict[str, Any]] = {}
    for end, pairs in found.items():
        k = wanted_n[end]
        if k == 0:
            ends[end] = {"values": np.zeros(0), "Y": torch.zeros(0, d, dtype=_WORK), "res": np.zeros(0)}
            continue
        if certify and len(pairs) == k:  # the Lanczos pairs themselves, each measured with one product
            Y = torch.stack([y for _, y, _ in pairs])
            values = torch.tensor([v for v, _, _ in pairs], dtype=_WORK, device=op.device)
            AY = op.matmat(Y.to(op.dtype)).to(_WORK)
            res = (AY - values[:, None] * Y).norm(dim=1).cpu().numpy()
            ends[end] = {"values": values.cpu().numpy(), "Y": Y, "AY": AY, "res": res}
        elif certify:  # pairs were added by the completeness check: Rayleigh–Ritz on all of them
            Z = _orthonormal_rows(torch.stack([y for _, y, _ in pairs]))
            AZ = op.matmat(Z.to(op.dtype)).to(_WORK)
            H = Z @ AZ.T
            values, S = torch.linalg.eigh((H + H.T) / 2)
            extra = values.cpu().numpy()
            order = torch.argsort(values, descending=end == "top")[:k]
            values, S = values[order], S[:, order]
            Y, AY = S.T @ Z, S.T @ AZ
            res = (AY - values[:, None] * Y).norm(dim=1).cpu().numpy()
            ends[end] = {"values": values.cpu().numpy(), "Y": Y, "AY": AY, "res": res, "all": extra}
        else:
            pairs = sorted(pairs, key=lambda p: -sign[end] * p[0])[:k]
            Y = torch.stack([y for _, y, _ in pairs])
            res = np.array([b for _, _, b in pairs])
            ends[end] = {"values": np.array([v for v, _, _ in pairs]), "Y": Y, "res": res}
    # The products' own rounding: the same vectors through the float64 operator, once.
    rounding = np.nan
    if op.dtype == _WORK:
        rounding = 0.0
        for end in ends.values():
            end["exact_res"] = end["res"]
    elif certify and op.has_reference:
        rounding = 0.0
        for end in ends.values():
            if len(end["values"]) == 0:
                end["exact_res"] = end["res"]
                continue
            AY64 = op.reference_matmat(end["Y"])
            rounding = max(rounding, float((AY64 - end["AY"]).norm(dim=1).max()))
            # Against the exact operator the Rayleigh quotient of y is ρ = yᵀA y, not θ: the
            # error bound is |θ − ρ| + min(r_ρ, r_ρ²/δ) (the quadratic term needs ρ).
            rho = (AY64 * end["Y"]).sum(1) / (end["Y"] * end["Y"]).sum(1)
            end["exact_res"] = (AY64 - rho[:, None] * end["Y"]).norm(dim=1).cpu().numpy()
            end["shift"] = np.abs(rho.cpu().numpy() - end["values"])
    # Gaps for the r²/δ bounds: the returned values and the Ritz values outside the range they
    # span at each end (Ritz values inside a found cluster are unconverged mixtures of its members).
    ritz = main["ritz"]
    for e in ends.values():
        if len(e["values"]):
            ritz = ritz[(ritz < e["values"].min() - 1e-12 * scale) | (ritz > e["values"].max() + 1e-12 * scale)]
    every = np.concatenate([ritz] + [e.get("all", e["values"]) for e in ends.values()])
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

    def result(end: str) -> Eigenpairs:
        e = ends[end]
        values, res = e["values"], e["res"]
        exact_res = e.get("exact_res")
        honest = res if exact_res is None else np.maximum(res, exact_res)
        errors = _error_bounds(values, honest, every) + e.get("shift", 0.0)
        converged = res <= tol * scale
        certified, reason = _certify(
            end, values, honest, errors, converged, tol, scale, status.get(end), notes.get(end), exact_res, rounding
        )
        return Eigenpairs(
            values.copy(),
            e["Y"].to(op.dtype).cpu().numpy(),
            res.copy(),
            converged,
            errors,
            end,
            **common,  # type: ignore[arg-type]
            certified=certified,
            reason=reason,
            rounding=float(rounding),
            exact_residuals=(np.full(len(values), np.nan) if exact_res is None else np.asarray(exact_res)),
            reference_hvps=op.reference_count - reference0,
            completeness_rounds=rounds,
        )

    return result("top"), result("bottom")


def _error_bounds(values: np.ndarray, residuals: np.ndarray, ritz: np.ndarray) -> np.ndarray:
    """min(r, r²/δ) per pair, δ the distance to the nearest Ritz value outside the pair's cluster.

    Ritz values within the residuals of each other are copies of one (possibly multiple)
    eigenvalue; the quadratic bound (Kato 1949; Parlett 1998, §11.7) needs the gap to the
    rest of the spectrum, not between copies.
    """
    if len(values) == 0:
        return np.zeros(0)
    distance = np.abs(values[:, None] - ritz[None, :])
    distance[distance <= 2 * residuals[:, None] + 1e-12 * np.abs(values[:, None])] = np.inf
    gap = distance.min(axis=1)
    return np.minimum(residuals, residuals**2 / np.maximum(gap, np.finfo(np.float64).tiny))


def _certify(
    end: str,
    values: np.ndarray,
    residuals: np.ndarray,
    errors: np.ndarray,
    converged: np.ndarray,
    tol: float,
    scale: float,
    status: str | None,
    note: str | None,
    exact_res: np.ndarray | None,
    rounding: float,
) -> tuple[np.ndarray, str]:
    """Per-pair certified flags and one reason for the first that is not.

    Certified: the pair converged (‖Ay − θy‖ ≤ tol·‖A‖), its eigenvalue error bound is within
    tol of the size of the eigenvalues asked for at this end (not only of ‖A‖: near a minimum
    |λmin| ≪ λmax), the residual is measured against float64 products, and the completeness
    check found no eigenvalue beyond the k-th.
    """
    k = len(values)
    if k == 0:
        return np.zeros(0, dtype=bool), ""
    target = end_target(values, tol, scale)
    certified = converged & (errors <= target)
    reasons = []
    if not converged.all():
        i = int(np.argmin(converged))
        reasons.append(f"{end} pair {i + 1} did not converge (residual {residuals[i]:.2g} > {tol:g}·‖A‖)")
    elif not (errors <= target).all():
        i = int(np.argmax(errors > target))
        cause = ""
        if rounding == rounding and rounding > target:  # not NaN
            cause = f"; the products' own float32 rounding is {rounding:.2g}: use dtype='float64'"
        reasons.append(
            f"{end} pair {i + 1} has error bound {errors[i]:.2g} > {target:.2g} ({tol:g} of the eigenvalues "
            f"at this end){cause}"
        )
    if exact_res is None:
        certified[:] = False
        reasons.append(
            "the products' rounding was not measured (no float64 reference for this operator, or certify=False)"
        )
    if status != "checked":
        certified[:] = False
        reasons.append(note or "completeness not checked")
    return certified, "; ".join(reasons)


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
