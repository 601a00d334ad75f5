"""The empirical NTK against closed forms and an explicit Jacobian product at float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from losslab.errors import UserError
from losslab.ntk import NTKConfig, ntk, ntk_vector_product, run_objective
from losslab.objective import Objective


def _two_layer(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 7), nn.Tanh(), nn.Linear(7, 3))
    X = torch.randn(9, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    return model, X, y


@pytest.mark.parametrize("method", ["jacobian", "ntvp"])
def test_linear_model_ntk_is_x_xT_plus_one_times_identity(method: str) -> None:
    torch.manual_seed(1)
    X = torch.randn(6, 5, dtype=torch.float64)
    obj = Objective(nn.Linear(5, 3), "mse", (X, torch.randn(6, 3, dtype=torch.float64)), dtype="float64")
    K = ntk(obj, method=method)
    # f(x) = Wx + b: ∂f_a/∂W_{ci} = δ_ac x_i and ∂f_a/∂b_c = δ_ac, so Θ(x, x')_ab = (xᵀx' + 1) δ_ab.
    expected = (X @ X.T + 1)[:, :, None, None] * torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(K, expected, rtol=1e-12, atol=1e-12)
    # Without a bias the kernel is X Xᵀ ⊗ I exactly.
    obj = Objective(nn.Linear(5, 3, bias=False), "mse", (X, torch.randn(6, 3, dtype=torch.float64)), dtype="float64")
    torch.testing.assert_close(ntk(obj, method=method), (X @ X.T)[:, :, None, None] * torch.eye(3).double())


@pytest.mark.parametrize("method", ["jacobian", "ntvp"])
def test_two_layer_ntk_equals_explicit_jacobian_product(method: str) -> None:
    model, X, y = _two_layer()
    obj = Objective(model, "cross_entropy", (X, y), dtype="float64")
    theta = obj.theta0 + 0.1 * torch.randn(obj.dim, dtype=torch.float64)

    # Independent reference: torch.autograd.functional.jacobian of a hand-written forward pass
    # (no functional_call, no torch.func), one example at a time.
    shapes = [p.shape for p in model.parameters()]
    sizes = [s.numel() for s in shapes]

    def f(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        W1, b1, W2, b2 = (p.view(s) for p, s in zip(t.split(sizes), shapes, strict=True))
        return torch.tanh(x @ W1.T + b1) @ W2.T + b2

    J = torch.stack([torch.autograd.functional.jacobian(lambda t, x=x: f(t, x), theta) for x in X])  # [n, k, D]
    expected = torch.einsum("iad,jbd->ijab", J, J)
    # Both are sums of D = 59 float64 products: agreement to 1e-12 relative is round-off.
    torch.testing.assert_close(ntk(obj, theta, method=method, rows=4, chunk=5), expected, rtol=1e-12, atol=1e-12)
    # A cross block Θ(X₁, X₂) is the matching sub-block.
    cross = ntk(obj, theta, X[:4], X[4:], method=method)
    torch.testing.assert_close(cross, expected[:4, 4:], rtol=1e-12, atol=1e-12)


def test_paths_agree_and_kernel_is_symmetric_psd_in_float32() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    X, y = torch.randn(20, 6), torch.randint(0, 4, (20,))
    obj = Objective(model, "cross_entropy", (X, y))
    a = ntk(obj, method="jacobian", rows=7)
    b = ntk(obj, method="ntvp", chunk=9)
    # float32 sums over D ≈ 1.4k products: 1e-5 relative is a few ulps times √D.
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(a.abs().max()))
    M = a.permute(0, 2, 1, 3).reshape(80, 80).double()
    assert float((M - M.T).norm() / M.norm()) < 1e-6
    lam = torch.linalg.eigvalsh((M + M.T) / 2)
    assert lam[0] > -1e-5 * lam[-1]
    result = run_objective(obj, NTKConfig(rows=20))
    assert result.method in ("jacobian", "ntvp") and set(result.predicted_seconds) == {"jacobian", "ntvp"}
    torch.testing.assert_close(torch.as_tensor(result.kernel), a, rtol=1e-5, atol=1e-5 * float(a.abs().max()))
    assert result.summary()["min_eigenvalue_relative"] > -1e-6 and not result.warnings()


def test_ntk_vector_product_matches_kernel() -> None:
    model, X, y = _two_layer(3)
    obj = Objective(model, "cross_entropy", (X, y), dtype="float64")
    v = torch.randn(9, 3, dtype=torch.float64)
    K = ntk(obj, method="jacobian").permute(0, 2, 1, 3).reshape(27, 27)
    torch.testing.assert_close(ntk_vector_product(obj, obj.theta0, v).reshape(-1), K @ v.reshape(-1))
    with pytest.raises(UserError, match="entries"):
        ntk_vector_product(obj, obj.theta0, torch.randn(5))


def test_conv_model_and_bad_method() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv1d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6, 2))
    X, y = torch.randn(5, 1, 8, dtype=torch.float64), torch.randint(0, 2, (5,))
    obj = Objective(model, "cross_entropy", (X, y), dtype="float64")
    torch.testing.assert_close(ntk(obj, method="jacobian"), ntk(obj, method="ntvp"), rtol=1e-12, atol=1e-12)
    with pytest.raises(UserError, match="'method' parameter of ntk"):
        ntk(obj, method="fast")
