"""Curvature operators against dense float64 references built another way."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from losslab.curvature import DenseOperator, as_operator, ggn_operator, hessian_operator
from losslab.errors import UserError
from losslab.objective import Objective

pytestmark = pytest.mark.usefixtures("one_thread")


# Both sides are float64 reverse-mode derivatives of the same function summed in a
# different order; their difference is a few ulps of max|H| (≈1e-15 relative), so
# 1e-9 relative leaves six orders of margin and still catches any real error.
RTOL = 1e-9


def _objective(case) -> Objective:
    return Objective(case.make_model(), case.loss, case.data, dtype="float64")


def _reference_loss(case, model: torch.nn.Module):
    """L(θ) written independently of Objective: functional_call + torch's own losses."""
    X, y = case.data.X_train.double(), case.data.y_train
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    buffers = dict(model.named_buffers())

    def loss(theta: torch.Tensor) -> torch.Tensor:
        params = {n: t.reshape(s) for n, t, s in zip(names, theta.split(sizes), shapes, strict=True)}
        out = functional_call(model, (params, buffers), (X,))
        if case.loss == "mse":
            return 0.5 * (out - y.double().reshape(out.shape)).square().sum() / len(X)
        return F.cross_entropy(out, y)

    return loss


def _manual_mlp_loss(case):
    """The tanh MLP 3-4-2 with ½‖f − y‖²/n, written out by hand (no nn.Module at all)."""
    X, y = case.data.X_train.double(), case.data.y_train.double()

    def loss(theta: torch.Tensor) -> torch.Tensor:
        W1, b1 = theta[:12].reshape(4, 3), theta[12:16]
        W2, b2 = theta[16:24].reshape(2, 4), theta[24:26]
        out = torch.tanh(X @ W1.T + b1) @ W2.T + b2
        return 0.5 * (out - y).square().sum() / len(X)

    return loss


def test_hessian_matches_autograd_hessian(tiny_case):
    obj = _objective(tiny_case)
    op = hessian_operator(obj)
    H = op.dense()
    assert op.count == obj.dim
    reference = torch.autograd.functional.hessian(_reference_loss(tiny_case, obj.model), obj.theta0)
    scale = float(reference.abs().max())
    torch.testing.assert_close(H, reference, rtol=RTOL, atol=RTOL * scale)
    if tiny_case.name == "mlp-tanh-mse":
        by_hand = torch.autograd.functional.hessian(_manual_mlp_loss(tiny_case), obj.theta0)
        torch.testing.assert_close(H, by_hand, rtol=RTOL, atol=RTOL * scale)


def test_ggn_matches_jacobian_formula(tiny_case):
    """G = (1/n) Σ Jᵢᵀ ∇²ℓᵢ Jᵢ with the output Hessian of each loss written in closed form."""
    obj = _objective(tiny_case)
    G = ggn_operator(obj).dense()
    X = tiny_case.data.X_train.double()
    model, n = obj.model, obj.n
    names = [k for k, _ in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]

    def outputs(theta: torch.Tensor) -> torch.Tensor:
        params = {k: t.reshape(s) for k, t, s in zip(names, theta.split(sizes), shapes, strict=True)}
        return functional_call(model, (params, dict(model.named_buffers())), (X,))

    out = outputs(obj.theta0)
    J = torch.autograd.functional.jacobian(outputs, obj.theta0)  # [n, C, D]
    C = out.shape[1]
    if tiny_case.loss == "mse":
        H_out = torch.eye(C, dtype=torch.float64).expand(n, C, C)
    else:  # softmax cross-entropy: diag(p) − p pᵀ
        p = out.softmax(1)
        H_out = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    reference = torch.einsum("ncd,nce,nef->df", J, H_out, J) / n
    scale = float(reference.abs().max())
    torch.testing.assert_close(G, reference, rtol=RTOL, atol=RTOL * scale)
    # PSD up to round-off of a float64 eigensolver (≈ 1e-15·‖G‖, checked at 1e-10).
    assert float(torch.linalg.eigvalsh(G).min()) >= -1e-10 * scale


def test_restriction_is_the_diagonal_block_and_counts():
    from tests.conftest import TINY_CASES

    obj = _objective(TINY_CASES[1])
    full = hessian_operator(obj)
    H = full.dense()
    groups = obj.layout.groups()
    assert list(groups) == ["1", "3"]
    for name, where in groups.items():
        before = full.count
        block = full.restrict(where, name=name)
        B = block.dense()
        torch.testing.assert_close(B, H[where, where], rtol=0, atol=1e-14 * float(H.abs().max()))
        assert block.count == where.stop - where.start
        assert full.count - before == block.count  # one full product per block product
    via_group = hessian_operator(obj, group="3")
    assert via_group.dim == groups["3"].stop - groups["3"].start
    with pytest.raises(UserError, match="'group' parameter"):
        hessian_operator(obj, group="nope")


def test_operator_shapes_and_matmul():
    A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    op = as_operator(A)
    v = torch.tensor([1.0, -1.0], dtype=torch.float64)
    torch.testing.assert_close(op @ v, A @ v)
    V = torch.randn(2, 4, dtype=torch.float64)
    torch.testing.assert_close(op @ V, A @ V)
    assert op.count == 5
    with pytest.raises(UserError, match="need vectors"):
        op.matmat(torch.zeros(3, 3))
    assert as_operator(op) is op


def test_dense_operator_rejects_bad_matrices():
    with pytest.raises(UserError, match="not symmetric"):
        DenseOperator(torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64))
    with pytest.raises(UserError, match="square"):
        DenseOperator(torch.zeros(2, 3))
    with pytest.raises(UserError, match="NaN or inf"):
        DenseOperator(torch.tensor([[float("nan")]]))
    with pytest.raises(UserError, match="Operator"):
        as_operator("not a matrix")
    # Round-off asymmetry (a Hessian assembled from products) is accepted and symmetrized.
    A = torch.tensor([[1.0, 2.0], [2.0 + 1e-14, 1.0]], dtype=torch.float64)
    assert torch.equal(DenseOperator(A).matrix, DenseOperator(A).matrix.T)


def test_non_finite_products_are_user_errors():
    """A loss with an infinite second derivative at θ: |f − y|^1.5 at f = y."""
    X = torch.ones(4, 1, dtype=torch.float64)
    y = torch.zeros(4, 1, dtype=torch.float64)
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    obj = Objective(model, lambda out, t: (out - t).abs().pow(1.5).sum(1), (X, y), dtype="float64")
    with pytest.raises(UserError, match="not finite"):
        hessian_operator(obj).matvec(torch.ones(1, dtype=torch.float64))
    # The same check holds for operators that bypass the Objective's own check.
    bad = as_operator(torch.eye(2, dtype=torch.float64))
    bad._matmat = lambda V: V * float("inf")
    with pytest.raises(UserError, match="not twice differentiable"):
        bad.matvec(torch.ones(2, dtype=torch.float64))
