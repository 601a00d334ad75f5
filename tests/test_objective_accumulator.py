"""One batch accumulator, one registry of curvature matrices, one place for the block path (issue 13)."""

from __future__ import annotations

import pytest
import torch

import losslab.objective.objective as objective_module
from losslab.curvature import MATRICES, lanczos, matrix_operator
from losslab.models import build_model
from losslab.objective import Objective

pytestmark = pytest.mark.usefixtures("one_thread")


def _objective(**kwargs) -> Objective:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(37, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (37,), generator=g)
    return Objective(build_model("mlp:5-6-3,act=tanh", seed=0), "cross_entropy", (X, y), dtype="float64", **kwargs)


def test_every_quantity_is_independent_of_the_batches():
    """37 rows in batches of 7 (the last one short) against one batch: the accumulator sums the
    same per-example terms, so float64 results agree to round-off (1e-12 relative)."""
    whole, split = _objective(), _objective(batch_size=7)
    theta = whole.theta0 + 0.3
    V = torch.randn(3, whole.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(split.loss(theta), whole.loss(theta), rtol=1e-12, atol=0)
    torch.testing.assert_close(split.grad(theta), whole.grad(theta), rtol=1e-12, atol=1e-14)
    for mode in ("reuse", "recompute", "forward"):
        a = _objective(batch_size=7, hvp_mode=mode).curvature_at(theta).hvp_many(V)
        torch.testing.assert_close(a, whole.curvature_at(theta).hvp_many(V), rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(
        split.curvature_at(theta).ggn_many(V), whole.curvature_at(theta).ggn_many(V), rtol=1e-10, atol=1e-13
    )
    thetas = theta + 0.1 * torch.randn(4, whole.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for mode in ("loop", "vmap"):
        torch.testing.assert_close(
            _objective(batch_size=7, many_mode=mode).loss_many(thetas), whole.loss_many(thetas), rtol=1e-12, atol=0
        )


def test_block_paths_give_the_same_products(monkeypatch):
    obj = _objective(batch_size=10)
    V = torch.randn(4, obj.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for scheme in ("reuse", "recompute", "forward", "ggn"):
        o = _objective(batch_size=10, hvp_mode="reuse" if scheme == "ggn" else scheme)
        at = o.curvature_at(o.theta0)
        run = at.ggn_many if scheme == "ggn" else at.hvp_many
        results = {}
        for path in ("loop", "vmap"):
            monkeypatch.setitem(objective_module.BLOCK_PATHS, scheme, path)
            results[path] = run(V)
        torch.testing.assert_close(results["vmap"], results["loop"], rtol=1e-12, atol=1e-14)


def test_a_new_matrix_is_one_per_batch_product_and_its_registration(monkeypatch):
    """A Gauss–Newton matrix with the identity as loss Hessian, (1/n) Σ JᵢᵀJᵢ, registered as
    'jtj': one function and two dictionary entries, then every estimator can use it."""

    def jtj_batch(at, X, y, V):
        f = lambda t: at.objective._outputs(t, X)  # noqa: E731
        _, vjp = torch.func.vjp(f, at.theta)
        return torch.stack([vjp(torch.func.jvp(f, (at.theta,), (v,))[1])[0] for v in V])

    monkeypatch.setitem(objective_module.BATCH_PRODUCTS, "jtj", jtj_batch)
    monkeypatch.setitem(MATRICES, "jtj", "JᵀJ/n")
    obj = _objective(batch_size=9)
    op = matrix_operator(obj, obj.theta0, "jtj")
    J = torch.autograd.functional.jacobian(lambda t: obj._outputs(t, obj.X).reshape(-1), obj.theta0)
    torch.testing.assert_close(op.dense(), J.T @ J / obj.n, rtol=1e-10, atol=1e-12)
    top = lanczos(op, 2, tol=1e-8)
    torch.testing.assert_close(
        torch.as_tensor(top.eigenvalues), torch.linalg.eigvalsh(J.T @ J / obj.n).flip(0)[:2], rtol=1e-8, atol=1e-12
    )


def test_registry_names_match_and_unknown_names_are_user_errors():
    assert set(MATRICES) == set(objective_module.BATCH_PRODUCTS)
    from losslab.errors import UserError

    with pytest.raises(UserError, match="'matrix' parameter"):
        matrix_operator(_objective(), None, "fisher")
