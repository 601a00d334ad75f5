"""The Objective against independent references at float64 on tiny models.

References are written here without the Objective: the loss as a plain function of
θ (``torch.nn.utils.stateless``-free: a fresh module with parameters copied in),
differentiated by ``torch.autograd.functional`` (gradient, dense Hessian). Tolerances
are float64 round-off scaled to the sizes involved (≤ 1e-10 relative unless stated).
"""

from __future__ import annotations

import copy
import doctest

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyCase
from torch import nn

import losslab.objective.objective as objective_module
from losslab.data import as_dataset, digits
from losslab.errors import UserError
from losslab.models import build_model
from losslab.objective import Objective, ParamLayout

RTOL = 1e-10  # float64: sums of ≤ 30 examples, each a few dozen flops deep


def reference_loss(case: TinyCase):
    """L(θ) written the obvious way: copy θ into a fresh module, mean PyTorch loss."""
    model = copy.deepcopy(case.make_model())
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    X, y = case.data.X_train, case.data.y_train

    def loss(theta: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            size = shape.numel()
            params[name] = theta[start : start + size].reshape(shape)
            start += size
        out = torch.func.functional_call(model, params, (X,))
        if case.loss == "cross_entropy":
            return F.cross_entropy(out, y)
        return 0.5 * F.mse_loss(out, y, reduction="sum") / len(X)

    return loss


def test_loss_grad_hessian_match_autograd_reference(tiny_case: TinyCase) -> None:
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    theta = obj.theta0 + 0.1 * torch.randn(obj.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = reference_loss(tiny_case)
    torch.testing.assert_close(obj.loss(theta), ref(theta), rtol=RTOL, atol=0)
    torch.testing.assert_close(obj.grad(theta), torch.autograd.functional.jacobian(ref, theta), rtol=RTOL, atol=1e-13)
    H_ref = torch.autograd.functional.hessian(ref, theta)
    torch.testing.assert_close(obj.hessian(theta), H_ref, rtol=RTOL, atol=1e-12)
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(obj.hvp(theta, v), H_ref @ v, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("mode", ["reuse", "recompute", "forward"])
def test_hvp_schemes_agree(tiny_case: TinyCase, mode: str) -> None:
    obj = Objective(
        tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64", hvp_mode=mode, batch_size=6
    )
    V = torch.randn(3, obj.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    H_ref = torch.autograd.functional.hessian(reference_loss(tiny_case), obj.theta0)
    at = obj.curvature_at(obj.theta0)
    torch.testing.assert_close(at.hvp_many(V), V @ H_ref, rtol=RTOL, atol=1e-12)
    assert at.count == 3


def test_ggn_matches_dense_jacobian_reference(tiny_case: TinyCase) -> None:
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64", batch_size=5)
    theta = obj.theta0
    model = tiny_case.make_model()
    X, y = tiny_case.data.X_train, tiny_case.data.y_train
    f = lambda t: torch.func.functional_call(model, obj.layout.unflatten(t), (X,))  # noqa: E731
    out = f(theta)
    J = torch.autograd.functional.jacobian(f, theta).reshape(out.numel(), -1)  # [n·k, D]
    if tiny_case.loss == "cross_entropy":
        p = out.softmax(1)
        blocks = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # ∇²_f of cross-entropy
    else:
        blocks = torch.eye(out.shape[1], dtype=out.dtype).expand(len(out), -1, -1)  # ∇²_f of ½‖f − y‖²
    G_ref = J.T @ torch.block_diag(*blocks) @ J / len(X)
    V = torch.randn(2, obj.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    at = obj.curvature_at(theta)
    torch.testing.assert_close(at.ggn_many(V), V @ G_ref, rtol=RTOL, atol=1e-12)
    assert y is not None


def test_batch_size_does_not_change_the_numbers() -> None:
    data = digits()
    model = build_model("mlp:64-16-10", seed=0)
    full = Objective(model, "cross_entropy", data, dtype="float64")
    seven = Objective(model, "cross_entropy", data, dtype="float64", batch_size=7)
    theta = full.theta0
    v = torch.randn(full.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # Sums over 1,438 examples in a different order: float64 round-off, far below 1e-12.
    torch.testing.assert_close(full.loss(theta), seven.loss(theta), rtol=0, atol=1e-12)
    torch.testing.assert_close(full.grad(theta), seven.grad(theta), rtol=0, atol=1e-12)
    torch.testing.assert_close(full.hvp(theta, v), seven.hvp(theta, v), rtol=0, atol=1e-12)
    assert full.metrics(theta) == pytest.approx(seven.metrics(theta), abs=1e-12)


def test_automatic_batches_on_cpu_stay_within_the_cache_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # A wide layer: at least 4,096 float32 outputs a row (16 KiB), so a cap of 1 MiB allows at most
    # 64 rows, far below what the 16 GiB budget allows; an explicit batch size is left alone.
    monkeypatch.setattr(objective_module, "CPU_BATCH_BYTES", 1 << 20)
    X, y = torch.randn(300, 8), torch.randint(0, 3, (300,))
    model = nn.Sequential(nn.Linear(8, 4096), nn.ReLU(), nn.Linear(4096, 3))
    capped = Objective(model, "cross_entropy", (X, y), memory_budget=16 << 30)
    per_row = capped._bytes_per_row
    assert per_row >= 4096 * 4 and capped.batch_size == (1 << 20) // per_row < 300
    assert capped.at_float64().batch_size == (1 << 20) // (2 * per_row)
    assert Objective(model, "cross_entropy", (X, y), memory_budget=16 << 30, batch_size=300).batch_size == 300
    monkeypatch.setattr(objective_module, "CPU_BATCH_BYTES", 1 << 40)
    whole = Objective(model, "cross_entropy", (X, y), memory_budget=16 << 30)
    assert whole.batch_size == 300
    torch.testing.assert_close(capped.loss(capped.theta0), whole.loss(whole.theta0), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-6)])
def test_many_point_paths_agree(dtype: str, tol: float) -> None:
    data = digits()
    model = build_model("mlp:64-20-20-10", seed=1)
    g = torch.Generator().manual_seed(0)
    base = Objective(model, "cross_entropy", data, dtype=dtype)
    thetas = base.theta0 + 0.3 * torch.randn(11, base.dim, generator=g).to(base.dtype)
    direct = torch.stack([base.loss(t) for t in thetas])
    results = {}
    for mode in ("plan", "loop", "vmap"):
        obj = Objective(model, "cross_entropy", data, dtype=dtype, many_mode=mode, batch_size=500)
        results[mode] = obj.metrics_many(thetas)
        # relative to the loss (≈ 2.3): float32 sums of 1,438 terms in different orders
        torch.testing.assert_close(results[mode]["loss"], direct, rtol=tol, atol=0)
    for mode in ("loop", "vmap"):
        assert torch.equal(results[mode]["accuracy"], results["plan"]["accuracy"])


def test_the_plan_reuses_its_buffers_without_mixing_calls() -> None:
    # The fused MLP plan writes each layer into a buffer kept between calls; calls of
    # different sizes and batch shapes in any order must give what a fresh objective gives.
    data = digits()
    model = build_model("mlp:64-20-20-10", seed=1)
    thetas = 0.3 * torch.randn(11, 1930, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    used = Objective(model, "cross_entropy", data, dtype="float64", many_mode="plan", batch_size=500)
    thetas = used.theta0 + thetas
    first = used.metrics_many(thetas)
    used.metrics_many(thetas[:3])
    used.loss_many(thetas[2:4] + 1.0)
    again = used.metrics_many(thetas)
    fresh = Objective(model, "cross_entropy", data, dtype="float64", many_mode="plan", batch_size=500)
    for result in (again, fresh.metrics_many(thetas)):
        assert torch.equal(result["loss"], first["loss"]) and torch.equal(result["accuracy"], first["accuracy"])
    assert torch.equal(used.metrics_many(thetas[:3])["loss"], first["loss"][:3])


def test_many_point_paths_agree_for_a_cnn() -> None:
    data = as_dataset((torch.randn(30, 40, dtype=torch.float64), torch.randint(10, (30,))))
    model = build_model("cnn1d:channels=3", seed=0)
    loop = Objective(model, "cross_entropy", data, dtype="float64", many_mode="loop")
    vmap = Objective(model, "cross_entropy", data, dtype="float64", many_mode="vmap")
    thetas = loop.theta0 + 0.1 * torch.randn(4, loop.dim, dtype=torch.float64)
    torch.testing.assert_close(loop.loss_many(thetas), vmap.loss_many(thetas), rtol=1e-12, atol=0)
    with pytest.raises(UserError, match="Sequential MLP"):
        Objective(model, "cross_entropy", data, many_mode="plan").loss_many(thetas.float())


@torch.no_grad()
def test_losses_follow_the_documented_normalization() -> None:
    X = torch.randn(10, 3, dtype=torch.float64)
    lin = nn.Linear(3, 2).double()
    y_reg = torch.randn(10, 2, dtype=torch.float64)
    obj = Objective(lin, "mse", (X, y_reg), dtype="float64")
    assert float(obj.loss(obj.theta0)) == pytest.approx(float(0.5 * ((lin(X) - y_reg) ** 2).sum(1).mean()), rel=1e-14)
    y_cls = torch.randint(2, (10,))
    obj = Objective(lin, "mse", (X, y_cls), dtype="float64")  # class labels → one-hot
    target = F.one_hot(y_cls, 2).double()
    assert float(obj.loss(obj.theta0)) == pytest.approx(float(0.5 * ((lin(X) - target) ** 2).sum(1).mean()), rel=1e-14)
    one = nn.Linear(3, 1).double()
    obj = Objective(one, "bce", (X, y_cls), dtype="float64")
    expected = F.binary_cross_entropy_with_logits(one(X)[:, 0], y_cls.double())
    assert float(obj.loss(obj.theta0)) == pytest.approx(float(expected), rel=1e-14)
    assert obj.metrics(obj.theta0)["accuracy"] == pytest.approx(
        float(((one(X)[:, 0] > 0) == (y_cls > 0)).double().mean())
    )
    mean_loss = Objective(lin, lambda out, t: F.cross_entropy(out, t), (X, y_cls), dtype="float64")
    assert float(mean_loss.loss(mean_loss.theta0)) == pytest.approx(float(F.cross_entropy(lin(X), y_cls)), rel=1e-14)


def test_layout_round_trips_and_groups_layers() -> None:
    model = build_model("deep:2,width=4,in=3,out=2,residual=1,bn=1", seed=0)
    layout = ParamLayout.of(model)
    theta = layout.flatten(model)
    restored = layout.unflatten(theta)
    for name, p in model.named_parameters():
        assert torch.equal(restored[name], p)
    groups = layout.groups()
    assert list(groups)[:3] == ["stem", "blocks.0.linear", "blocks.0.norm"]
    assert sum(s.stop - s.start for s in groups.values()) == layout.dim
    obj = Objective(model, "cross_entropy", as_dataset((torch.randn(6, 3), torch.randint(2, (6,)))))
    fresh = build_model("deep:2,width=4,in=3,out=2,residual=1,bn=1", seed=5)
    fresh.load_state_dict(obj.state_dict(obj.theta0))
    assert torch.equal(ParamLayout.of(fresh).flatten(fresh), theta)


def test_doctests_hold() -> None:
    result = doctest.testmod(objective_module, verbose=False)
    assert result.attempted >= 1 and result.failed == 0


# --------------------------------------------------------------------- checks
class Noisy(nn.Module):
    """Adds fresh noise in forward: what random augmentation looks like to the objective."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x + torch.randn_like(x))


class BatchCentered(nn.Module):
    """Subtracts the batch mean: each output depends on its batch, like train-mode batch norm."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x - x.mean(0))


DATA = ((torch.randn(12, 3), torch.randint(2, (12,))),)


@pytest.mark.parametrize(
    "model,loss,match",
    [
        (
            nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5)).train(),
            "cross_entropy",
            "dropout in training mode.*model.eval",
        ),
        (
            nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).train(),
            "cross_entropy",
            "batch norm in training mode.*model.eval",
        ),
        (Noisy(), "cross_entropy", "different outputs twice.*check_determinism=False"),
        (BatchCentered(), "cross_entropy", "depends on the other examples"),
        (nn.Linear(3, 1), "cross_entropy", "outputs 1 logits but the targets contain class 1"),
        (nn.Linear(3, 1), "mse", "mse with class targets"),
        (nn.Linear(3, 2), "bce", "bce needs one logit"),
        (nn.Linear(4, 2), "cross_entropy", "failed on inputs of shape"),
    ],
)
def test_checks_name_the_cause_and_the_fix(model: nn.Module, loss: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        Objective(model, loss, DATA[0])


def test_checks_can_be_turned_off_and_other_errors() -> None:
    Objective(Noisy(), "cross_entropy", DATA[0], check_determinism=False)
    obj = Objective(nn.Linear(3, 2), "cross_entropy", DATA[0])
    with pytest.raises(UserError, match="has shape \\(5,\\) but the model has 8 parameters"):
        obj.loss(torch.zeros(5))
    with pytest.raises(UserError, match="not finite"):
        obj.loss(torch.full((8,), float("nan")))
    assert torch.isnan(obj.loss_many(torch.full((2, 8), float("nan")))).all()  # surfaces get NaN, not errors
    with pytest.raises(UserError, match="NaN or inf"):
        Objective(
            nn.Linear(3, 2), "cross_entropy", (torch.full((4, 3), float("nan")), torch.zeros(4, dtype=torch.long))
        )
    with pytest.raises(UserError, match="Hessian products need vectors"):
        obj.hvp(obj.theta0, torch.zeros(3))
    with pytest.raises(UserError, match="'dtype' parameter"):
        Objective(nn.Linear(3, 2), "cross_entropy", DATA[0], dtype="float16")
    with pytest.raises(UserError, match="'loss' parameter"):
        Objective(nn.Linear(3, 2), "hinge", DATA[0])


def test_the_users_model_is_not_modified() -> None:
    model = nn.Linear(3, 2)
    before = copy.deepcopy(model.state_dict())
    obj = Objective(model, "cross_entropy", DATA[0], dtype="float64")
    obj.loss(obj.theta0 + 1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.weight.dtype == torch.float32 and model.weight.requires_grad


def test_a_tiny_transformer_works_on_every_path() -> None:
    g = torch.Generator().manual_seed(0)
    data = as_dataset((torch.randn(9, 6, generator=g, dtype=torch.float64), torch.randint(3, (9,), generator=g)))
    model = build_model("transformer:length=6,dim=4,heads=2,layers=1,classes=3", seed=0).double()
    case = TinyCase("transformer", lambda: model, "cross_entropy", data)
    obj = Objective(model, "cross_entropy", data, dtype="float64", batch_size=4)
    theta = obj.theta0
    H_ref = torch.autograd.functional.hessian(reference_loss(case), theta)
    torch.testing.assert_close(obj.hessian(theta), H_ref, rtol=RTOL, atol=1e-12)
    thetas = theta + 0.1 * torch.randn(3, obj.dim, generator=g, dtype=torch.float64)
    loop = Objective(model, "cross_entropy", data, dtype="float64", many_mode="loop").loss_many(thetas)
    vmap = Objective(model, "cross_entropy", data, dtype="float64", many_mode="vmap").loss_many(thetas)
    torch.testing.assert_close(loop, vmap, rtol=1e-12, atol=0)


def test_reuse_is_chosen_by_the_measured_graph_not_the_rough_bound() -> None:
    """'auto' keeps the gradient graph when its measured size fits the budget (issue 17 §3).

    The rough bound (8 × module outputs per row) refuses graphs that fit; the measured rule
    counts the tensors the graph saves. Whatever the budget, the products are the same.
    """
    torch.manual_seed(0)
    X, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    model = build_model("resnet8:width=4", seed=0).eval()
    probe = Objective(model, "cross_entropy", (X, y))
    per_row, rough = probe.graph_bytes_per_row(), 8 * probe._bytes_per_row
    assert probe._bytes_per_row < per_row < rough  # saves more than its outputs, less than the bound
    fixed = 4 * probe.dim * 4
    assert 1.5 < probe.at_float64().graph_bytes_per_row() / per_row < 2.5  # measured again at float64
    between = Objective(model, "cross_entropy", (X, y), memory_budget=(64 * (per_row + rough)) // 2 + fixed)
    below = Objective(model, "cross_entropy", (X, y), memory_budget=64 * per_row // 2)
    at_between, at_below = between.curvature_at(between.theta0), below.curvature_at(below.theta0)
    assert (at_between._mode, at_below._mode) == ("reuse", "recompute")
    v = torch.randn(probe.dim)
    torch.testing.assert_close(at_between.hvp(v), at_below.hvp(v), rtol=1e-4, atol=1e-5)
