"""The empirical neural tangent kernel Θ(x, x') = J(x) J(x')ᵀ of any model an `Objective` accepts.

    Θ(x, x')_{ab} = Σ_d ∂f_a(x; θ)/∂θ_d · ∂f_b(x'; θ)/∂θ_d          (Jacot et al. 2018)

Two ways to compute the [n₁, n₂, k, k] block (after Novak et al. 2022, "Fast finite width
neural tangent kernel"):

- ``"jacobian"`` (Jacobian contraction): J(X₁) [n₁k, D] and J(X₂) by reverse mode, then one
  matrix product. Memory (n₁ + n₂)·k·D numbers; fastest while that fits.
- ``"ntvp"`` (NTK-vector products): column j of Θ is J(X₁)(J(X₂)ᵀ e_j), one vector-Jacobian
  product and one Jacobian-vector product per column, vmapped over a chunk of columns.
  Memory chunk·D; no Jacobian is ever held.

``"auto"`` times one unit of each on this model and device and picks the cheaper predicted
total (`choose_method`); where the Jacobians would not fit the memory budget it takes
``"ntvp"``. Both paths give the same kernel to round-off (tests/test_ntk_kernel.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.func import jacrev, jvp, vjp, vmap

from losslab.errors import UserError, check_choice, check_int
from losslab.objective import Objective

__all__ = ["METHODS", "choose_method", "ntk", "ntk_vector_product"]

METHODS = ("auto", "jacobian", "ntvp")


def _output_fn(objective: Objective, X: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """θ ↦ f(X; θ) flattened to [n·k] (a model with one output per row gives k = 1)."""

    def f(theta: torch.Tensor) -> torch.Tensor:
        return objective._outputs(theta, X).reshape(-1)

    return f


def _rows(objective: Objective, X: torch.Tensor | None) -> torch.Tensor:
    X = objective.X if X is None else torch.as_tensor(X)
    return X.to(objective.device, objective.dtype if X.is_floating_point() else X.dtype)


def _jacobian(objective: Objective, theta: torch.Tensor, X: torch.Tensor, rows: int) -> torch.Tensor:
    """J(X) as [n·k, D], by reverse mode over blocks of ``rows`` examples."""
    parts = [jacrev(_output_fn(objective, X[i : i + rows]))(theta) for i in range(0, len(X), rows)]
    return torch.cat(parts)


def _kernel_jacobian(
    objective: Objective, theta: torch.Tensor, X1: torch.Tensor, X2: torch.Tensor | None, rows: int
) -> torch.Tensor:
    J1 = _jacobian(objective, theta, X1, rows)
    J2 = J1 if X2 is None else _jacobian(objective, theta, X2, rows)
    return J1 @ J2.T


def _kernel_ntvp(
    objective: Objective, theta: torch.Tensor, X1: torch.Tensor, X2: torch.Tensor | None, rows: int, chunk: int
) -> torch.Tensor:
    """Columns J(X₁)(J(X₂)ᵀ e_j), X₂ taken ``rows`` examples at a time so that each pullback runs
    backward through those rows only (a pullback through all of X₂ per column would cost n₂² passes)."""
    f1 = _output_fn(objective, X1)
    X2 = X1 if X2 is None else X2
    cols = []
    for i in range(0, len(X2), rows):
        out2, pullback = vjp(_output_fn(objective, X2[i : i + rows]), theta)

        def column(e: torch.Tensor, pullback=pullback) -> torch.Tensor:  # bound per block
            (tangent,) = pullback(e)
            return jvp(f1, (theta,), (tangent,))[1]

        eye = torch.eye(out2.numel(), dtype=out2.dtype, device=out2.device)
        cols += [vmap(column)(eye[j : j + chunk]) for j in range(0, len(eye), chunk)]
    return torch.cat(cols).T


def _seconds(fn: Callable[[], object], device: torch.device) -> float:
    fn()  # warm-up: first calls pay for allocation and dispatch caches
    best = float("inf")
    for _ in range(3):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def choose_method(
    objective: Objective,
    theta: torch.Tensor,
    n1: int,
    n2: int,
    *,
    rows: int = 16,
    chunk: int = 16,
) -> tuple[str, dict[str, float]]:
    """The cheaper path for an [n₁, n₂] kernel, by timing one unit of each here.

    Jacobian path: one ``rows``-example Jacobian, scaled to (n₁ + n₂)/rows blocks, plus the
    product (timed on the probe's Jacobian, scaled by n₁n₂/rows²). NTVP path: one chunk of
    ``chunk`` columns (pullback through ``rows`` examples, push-forward through n₁ rows),
    scaled to n₂k/chunk chunks. Returns the method and the
    predicted seconds of each (``"jacobian"`` is inf where its Jacobians exceed the memory budget).
    """
    X = objective.X[: min(rows, objective.n)]
    p = len(X)
    k = objective._outputs(theta, X[:1]).numel()
    bytes_per = torch.finfo(objective.dtype).bits // 8
    jac_bytes = (n1 + n2) * k * objective.dim * bytes_per
    J = _jacobian(objective, theta, X, rows)
    t_jac = _seconds(lambda: _jacobian(objective, theta, X, rows), objective.device)
    t_mm = _seconds(lambda: J @ J.T, objective.device)
    jacobian = (n1 + n2) / p * t_jac + n1 * n2 / (p * p) * t_mm
    if jac_bytes > objective.memory_budget:
        jacobian = float("inf")
    f1 = _output_fn(objective, objective.X[: min(n1, objective.n)])
    _, pullback = vjp(_output_fn(objective, X), theta)
    eye = torch.eye(p * k, dtype=objective.dtype, device=objective.device)[:chunk]

    def one_chunk() -> torch.Tensor:
        return vmap(lambda e: jvp(f1, (theta,), (pullback(e)[0],))[1])(eye)

    t_ntvp = _seconds(one_chunk, objective.device)
    scale = min(n1, objective.n)
    ntvp = n2 * k / len(eye) * t_ntvp * (n1 / scale)
    predicted = {"jacobian": jacobian, "ntvp": ntvp}
    return ("jacobian" if jacobian <= ntvp else "ntvp"), predicted


def ntk(
    objective: Objective,
    theta: torch.Tensor | None = None,
    X1: torch.Tensor | None = None,
    X2: torch.Tensor | None = None,
    *,
    method: str = "auto",
    rows: int = 16,
    chunk: int = 16,
) -> torch.Tensor:
    """The empirical NTK block Θ(X₁, X₂) at θ, shape [n₁, n₂, k, k].

    ``X1`` defaults to the objective's data, ``X2`` to ``X1`` (then the kernel is symmetric
    positive semi-definite as a [n₁k, n₁k] matrix). ``method``: 'jacobian', 'ntvp' or
    'auto' (see the module docstring). ``rows`` examples per Jacobian block, ``chunk``
    columns per vmapped NTK-vector product.

    For a linear model f(x) = Wx + b, J(x) = [x ⊗ I_k, I_k], so Θ(x, x') = (xᵀx' + 1)·I_k.
    """
    check_choice(method, "method", "ntk", METHODS)
    check_int(rows, "rows", "ntk", low=1)
    check_int(chunk, "chunk", "ntk", low=1)
    theta = objective.theta0 if theta is None else objective.as_theta(theta)
    theta = theta.detach()
    X1 = _rows(objective, X1)
    same = X2 is None
    X2r = X1 if same else _rows(objective, X2)
    if len(X1) == 0 or len(X2r) == 0:
        raise UserError("The NTK needs at least one row in X1 and X2: pass non-empty inputs.")
    if method == "auto":
        method, _ = choose_method(objective, theta, len(X1), len(X2r), rows=rows, chunk=chunk)
    k = objective._outputs(theta, X1[:1]).numel()
    if method == "jacobian":
        K = _kernel_jacobian(objective, theta, X1, None if same else X2r, rows)
    else:
        K = _kernel_ntvp(objective, theta, X1, None if same else X2r, rows, chunk)
    K = K.detach().reshape(len(X1), k, len(X2r), k).permute(0, 2, 1, 3)
    if objective.check_finite and not torch.isfinite(K).all():
        raise UserError("The NTK is not finite at this θ: check the weights (NaN or inf) or use --dtype float64.")
    return K


def ntk_vector_product(
    objective: Objective, theta: torch.Tensor, v: torch.Tensor, X: torch.Tensor | None = None
) -> torch.Tensor:
    """Θ(X, X) v = J (Jᵀ v) for v of shape [n, k], without forming Θ or J (one vjp, one jvp)."""
    theta = objective.as_theta(theta).detach()
    X = _rows(objective, X)
    f = _output_fn(objective, X)
    out, pullback = vjp(f, theta)
    v = torch.as_tensor(v).to(out.device, out.dtype)
    if v.numel() != out.numel():
        shape = (len(X), out.numel() // len(X))
        raise UserError(f"The vector has {v.numel()} entries but f(X) has {out.numel()}: pass shape {shape}.")
    (tangent,) = pullback(v.reshape(-1))
    return jvp(f, (theta,), (tangent,))[1].reshape(v.shape).detach()
