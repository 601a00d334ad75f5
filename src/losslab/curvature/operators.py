"""Curvature matrices as symmetric linear operators that count their products.

Every estimator in `losslab.curvature` takes an operator ``A`` on R^d (or a dense
symmetric tensor, wrapped by `as_operator`) and only ever asks for products ``A V``
with a block of row vectors V [k, d]. The operators here are

- `hessian_operator`: ∇²L(θ) of an `Objective`, one Hessian-vector product per vector
  (Pearlmutter 1994), reusing the gradient graph at θ (`Objective.curvature_at`);
- `ggn_operator`: the generalized Gauss–Newton G = (1/n) Σᵢ Jᵢᵀ ∇²_f ℓᵢ Jᵢ
  (Schraudolph 2002), positive semi-definite for the convex losses of losslab;
- `Operator.restrict`: the diagonal block P_g A P_gᵀ of one parameter group (a layer),
  for per-layer spectra. A product with the block costs one product with A.

>>> import torch
>>> X = torch.randn(30, 4, dtype=torch.float64); y = torch.randn(30, 1, dtype=torch.float64)
>>> from losslab.objective import Objective
>>> obj = Objective(torch.nn.Linear(4, 1, bias=False), "mse", (X, y), dtype="float64")
>>> H = hessian_operator(obj, obj.theta0)  # ½‖Xw − y‖²/n: H = XᵀX/n
>>> bool(torch.allclose(H.dense(), X.T @ X / 30)), H.count
(True, 4)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from losslab.errors import UserError
from losslab.objective import CurvatureAt, Objective

__all__ = [
    "MATRICES",
    "DenseOperator",
    "Operator",
    "as_operator",
    "ggn_operator",
    "hessian_operator",
    "matrix_operator",
]


class Operator:
    """A symmetric linear map v ↦ A v on R^d; ``count`` is the number of vectors multiplied.

    Parameters
    ----------
    matmat : ``fn(V [k, d]) -> A V`` row by row, in ``dtype`` on ``device``.
    dim, dtype, device : the space the operator acts on.
    name : what it is ('hessian', 'ggn', 'dense', 'hessian[1]' for a block), for reports.
    reference : the same map at float64, ``fn(V [k, d] float64) -> A V`` (optional). Below
        float64, `lanczos` multiplies its returned vectors by it once, so that the residuals
        it certifies are against the exact operator and include the products' own rounding.
        Its products are counted in ``reference_count``, not ``count``.
    """

    def __init__(
        self,
        matmat: Callable[[torch.Tensor], torch.Tensor],
        dim: int,
        *,
        dtype: torch.dtype,
        device: torch.device,
        name: str = "operator",
        reference: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self._matmat = matmat
        self._reference = reference
        self.reference_count = 0
        self.dim = int(dim)
        self.dtype = dtype
        self.device = torch.device(device)
        self.name = name
        self.count = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dim={self.dim}, dtype={self.dtype}, products={self.count})"

    @property
    def shape(self) -> tuple[int, int]:
        return (self.dim, self.dim)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """A vᵢ for each row of V [k, d]; returns [k, d] in this operator's dtype."""
        V = torch.as_tensor(V)
        if V.ndim != 2 or V.shape[1] != self.dim:
            raise UserError(f"Products with this {self.name} need vectors [k, {self.dim}]. Got shape {tuple(V.shape)}.")
        V = V.to(self.device, self.dtype)
        self.count += len(V)
        out = self._matmat(V)
        if not bool(torch.isfinite(out).all()):
            raise UserError(
                f"A product with the {self.name} is not finite: the loss is not twice "
                "differentiable at θ "
                "or θ holds NaN/inf (check the checkpoint, or evaluate at another θ)."
            )
        return out

    @property
    def has_reference(self) -> bool:
        """Whether products at float64 are available (always, for a float64 operator)."""
        return self.dtype == torch.float64 or self._reference is not None

    def reference_matmat(self, V: torch.Tensor) -> torch.Tensor:
        """A vᵢ at float64 for each row of V [k, d] (this operator itself when it is float64)."""
        if self.dtype == torch.float64:
            return self.matmat(V)
        if self._reference is None:
            raise UserError(f"This {self.name} has no float64 reference: pass reference=… to Operator.")
        self.reference_count += len(V)
        return self._reference(torch.as_tensor(V).to(self.device, torch.float64))

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """A v for one vector v [d]."""
        return self.matmat(torch.as_tensor(v).reshape(1, -1))[0]

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        return self.matvec(v) if torch.as_tensor(v).ndim == 1 else self.matmat(torch.as_tensor(v).T).T

    def dense(self) -> torch.Tensor:
        """The [d, d] matrix (d products; for tests and tiny models)."""
        return self.matmat(torch.eye(self.dim, dtype=self.dtype, device=self.device))

    def restrict(self, where: slice, name: str | None = None) -> Operator:
        """The diagonal block A[where, where] as an operator on R^{|where|}.

        Each product embeds the vector in zeros of length d, multiplies by A and keeps
        ``where``: one product with A per vector, counted on both operators.
        """
        start, stop, step = where.indices(self.dim)
        if step != 1 or stop <= start:
            raise UserError(f"A restriction needs a non-empty contiguous slice of 0…{self.dim}. Got {where}.")
        parent = self

        def embed(V: torch.Tensor) -> torch.Tensor:
            full = torch.zeros(len(V), parent.dim, dtype=V.dtype, device=parent.device)
            full[:, start:stop] = V
            return full

        def block(V: torch.Tensor) -> torch.Tensor:
            return parent.matmat(embed(V))[:, start:stop]

        def reference(V: torch.Tensor) -> torch.Tensor:
            return parent.reference_matmat(embed(V))[:, start:stop]

        return Operator(
            block,
            stop - start,
            dtype=self.dtype,
            device=self.device,
            name=name or f"{self.name}[{start}:{stop}]",
            reference=reference if self._reference is not None else None,
        )


class DenseOperator(Operator):
    """A dense symmetric matrix as an operator (tests pass matrices with known spectra)."""

    def __init__(self, matrix: torch.Tensor, name: str = "dense") -> None:
        A = torch.as_tensor(matrix)
        if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
            raise UserError(f"A curvature matrix must be square [d, d]. Got shape {tuple(A.shape)}.")
        if not A.is_floating_point():
            A = A.to(torch.float64)
        if not bool(torch.isfinite(A).all()):
            raise UserError("The matrix holds NaN or inf: pass a finite symmetric matrix.")
        # Asymmetry from round-off (e.g. a Hessian assembled from products) is a few
        # ulps of ‖A‖; √eps (1.5e-8 at float64, 3.5e-4 at float32) separates it from
        # a matrix that is simply not symmetric.
        scale = float(A.abs().max()) or 1.0
        if float((A - A.T).abs().max()) > torch.finfo(A.dtype).eps ** 0.5 * scale:
            raise UserError("The matrix is not symmetric: pass a symmetric matrix (e.g. (A + A.T) / 2).")
        self.matrix = (A + A.T) / 2
        exact = self.matrix.to(torch.float64)
        super().__init__(
            lambda V: V @ self.matrix,
            A.shape[0],
            dtype=A.dtype,
            device=A.device,
            name=name,
            reference=lambda V: V @ exact,
        )


def as_operator(A: Operator | torch.Tensor) -> Operator:
    """``A`` itself when it is an `Operator`; a dense symmetric tensor as a `DenseOperator`."""
    if isinstance(A, Operator):
        return A
    if isinstance(A, torch.Tensor) or hasattr(A, "__array__"):
        return DenseOperator(torch.as_tensor(A))
    raise UserError(
        "Curvature estimators take an Operator (hessian_operator, ggn_operator) or a dense "
        "symmetric "
        f"tensor. Got {type(A).__name__}."
    )


def _at(objective: Objective, theta: torch.Tensor | CurvatureAt | None) -> CurvatureAt:
    if isinstance(theta, CurvatureAt):
        return theta
    return objective.curvature_at(objective.theta0 if theta is None else theta)


def _float64_products(at: CurvatureAt, matrix: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The same products on a float64 copy of the objective at the same θ, built on first use."""
    if at.objective.dtype == torch.float64:
        return None
    twin: list[CurvatureAt] = []

    def matmat(V: torch.Tensor) -> torch.Tensor:
        if not twin:
            exact = at.objective.at_float64()
            twin.append(exact.curvature_at(at.theta.to(torch.float64), cache=at.cache))
        return twin[0].products(matrix, V)

    return matmat


def _with_group(op: Operator, objective: Objective, group: str | None) -> Operator:
    if group is None:
        return op
    groups = objective.layout.groups()
    if group not in groups:
        raise UserError(f"The 'group' parameter must be one of {', '.join(map(repr, groups))}. Got {group!r}.")
    return op.restrict(groups[group], name=f"{op.name}[{group}]")


def matrix_operator(
    objective: Objective,
    theta: torch.Tensor | CurvatureAt | None = None,
    matrix: str = "hessian",
    *,
    group: str | None = None,
) -> Operator:
    """The curvature matrix ``matrix`` (a name in `MATRICES`) of ``objective`` at θ as an operator.

    ``group`` restricts it to one layer of ``objective.layout.groups()``. Below float64 the
    operator carries a float64 twin of the same products (built on first use), which
    `lanczos` uses once per run to measure the products' rounding.
    """
    if matrix not in MATRICES:
        raise UserError(f"The 'matrix' parameter must be one of {', '.join(MATRICES)}. Got {matrix!r}.")
    at = _at(objective, theta)
    op = Operator(
        lambda V: at.products(matrix, V),
        objective.dim,
        dtype=objective.dtype,
        device=objective.device,
        name=matrix,
        reference=_float64_products(at, matrix),
    )
    return _with_group(op, objective, group)


def hessian_operator(
    objective: Objective,
    theta: torch.Tensor | CurvatureAt | None = None,
    *,
    group: str | None = None,
) -> Operator:
    """The Hessian ∇²L(θ) of ``objective`` (at ``theta0`` by default) as an operator.

    ``group`` restricts it to one layer of ``objective.layout.groups()``. Products reuse
    the gradient graph at θ, so a Lanczos run pays one extra backward pass per vector.
    """
    return matrix_operator(objective, theta, "hessian", group=group)


def ggn_operator(
    objective: Objective,
    theta: torch.Tensor | CurvatureAt | None = None,
    *,
    group: str | None = None,
) -> Operator:
    """The generalized Gauss–Newton matrix G(θ) = (1/n) Σᵢ Jᵢᵀ ∇²_f ℓᵢ Jᵢ as an operator (PSD)."""
    return matrix_operator(objective, theta, "ggn", group=group)


# The curvature matrices by name (the CLI's ``--matrix``): each is a per-batch product in
# `losslab.objective.objective.BATCH_PRODUCTS`; a new one (a Fisher, say) is that function
# plus one line there and one here.
MATRICES: dict[str, str] = {
    "hessian": "∇²L(θ), the Hessian of the loss",
    "ggn": "the generalized Gauss–Newton matrix (1/n) Σᵢ Jᵢᵀ ∇²_f ℓᵢ Jᵢ",
}
