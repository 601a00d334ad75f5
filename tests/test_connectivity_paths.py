"""Paths and their evaluation: exact endpoints, formulas, batch-norm statistics, REPAIR, bends.

References are built another way: parameters loaded into a fresh module with
``vector_to_parameters`` and PyTorch's own losses; batch-norm statistics from a
train-mode forward pass of the whole data; REPAIR's statistics from hand-written layers.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslab.connectivity import (
    CURVE_CONFIG,
    Network,
    Path,
    Repair,
    as_network,
    evaluate_path,
    fit_curve,
    reestimate_batch_norm,
)
from losslab.connectivity.graph import TracedNetwork
from losslab.data import as_dataset, load_data
from losslab.errors import UserError
from losslab.models import build_model
from losslab.objective import Objective
from losslab.train import TrainConfig, init_thetas, train_ensemble

# float64 values of O(1) computed along two routes (fused vs plain ops): a few ulps apart.
TOL = 1e-12


def ends(dim: int = 7, seed: int = 0) -> tuple[Network, Network, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a, b, c = (torch.randn(dim, generator=g, dtype=torch.float64) for _ in range(3))
    return Network(a, {}), Network(b, {}), c


@pytest.mark.parametrize("kind", ["line", "bezier", "chain"])
def test_every_path_starts_and_ends_exactly_at_its_networks(kind: str) -> None:
    a, b, bend = ends()
    path = Path(kind, a, b, None if kind == "line" else bend)
    points = path.thetas(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.equal(points[0], a.theta) and torch.equal(points[1], b.theta)


def test_curve_formulas() -> None:
    a, b, c = ends()
    t = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    bezier = Path("bezier", a, b, c).thetas(t)
    for i, ti in enumerate(t):
        expected = (1 - ti) ** 2 * a.theta + 2 * ti * (1 - ti) * c + ti**2 * b.theta
        torch.testing.assert_close(bezier[i], expected, rtol=0, atol=TOL)
    chain = Path("chain", a, b, c).thetas(t)
    torch.testing.assert_close(chain[0], 0.5 * (a.theta + c), rtol=0, atol=TOL)
    torch.testing.assert_close(chain[1], c, rtol=0, atol=TOL)
    torch.testing.assert_close(chain[2], 0.5 * (c + b.theta), rtol=0, atol=TOL)
    line = Path("line", a, b).thetas(t)
    torch.testing.assert_close(line[1], 0.5 * (a.theta + b.theta), rtol=0, atol=TOL)
    with pytest.raises(UserError, match="needs a bend"):
        Path("bezier", a, b)


def test_path_values_match_a_plain_pytorch_loop(tiny_case) -> None:
    objective = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    a = as_network(objective, objective.model)
    b = as_network(objective, objective.theta0 + 0.3 * torch.randn(objective.dim, dtype=torch.float64))
    # Both ends share the model's batch-norm statistics, which the loop below keeps too.
    evaluation = evaluate_path(objective, Path("line", a, b), points=6, bn_reset=False)
    X, y = tiny_case.data.split("train")
    model = tiny_case.make_model()
    for i, t in enumerate(np.linspace(0, 1, 6)):
        nn.utils.vector_to_parameters((1 - t) * a.theta + t * b.theta, model.parameters())
        with torch.no_grad():
            out = model(X)
        if tiny_case.loss == "mse":
            expected = 0.5 * F.mse_loss(out, y, reduction="sum") / len(X)
        else:
            expected = F.cross_entropy(out, y)
            error = 1.0 - float((out.argmax(1) == y).double().mean())
            assert evaluation.values["train_error"][i] == pytest.approx(error, abs=TOL)
        assert evaluation.values["train_loss"][i] == pytest.approx(float(expected), abs=TOL)


def bn_pair(tiny_case) -> tuple[Objective, Network, Network]:
    objective = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    other = tiny_case.make_model()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.3 * torch.randn_like(p))
        for name, buf in other.named_buffers():
            if "running" in name:
                buf.mul_(1.5).add_(0.1)
    return objective, as_network(objective, objective.model), as_network(objective, other)


def reference_model(tiny_case, theta: torch.Tensor, buffers: dict[str, torch.Tensor]) -> nn.Module:
    model = tiny_case.make_model()
    nn.utils.vector_to_parameters(theta, model.parameters())
    model.load_state_dict({**model.state_dict(), **buffers})
    return model.eval()


def test_batch_norm_statistics_equal_a_full_batch_train_mode_pass() -> None:
    from conftest import TINY_CASES

    case = next(c for c in TINY_CASES if c.name == "resnet-bn-ce")
    objective, a, b = bn_pair(case)
    theta = 0.5 * (a.theta + b.theta)
    mine = reestimate_batch_norm(objective, theta)
    reference = reference_model(case, theta, a.buffers)
    for module in reference.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.momentum = 1.0  # the running statistics become this batch's statistics
    reference.train()
    X, _ = case.data.split("train")
    with torch.no_grad():
        reference(X)
    n = len(X)
    for name, value in reference.state_dict().items():
        if name.endswith("running_mean"):
            torch.testing.assert_close(mine[name], value, rtol=0, atol=TOL)
        elif name.endswith("running_var"):  # PyTorch keeps the unbiased variance, losslab the population one
            torch.testing.assert_close(mine[name], value * (n - 1) / n, rtol=0, atol=TOL)


@pytest.mark.parametrize("bn_reset", [True, False])
def test_batch_norm_paths_use_the_statistics_they_claim(bn_reset: bool) -> None:
    from conftest import TINY_CASES

    case = next(c for c in TINY_CASES if c.name == "resnet-bn-ce")
    objective, a, b = bn_pair(case)
    evaluation = evaluate_path(objective, Path("line", a, b), points=5, bn_reset=bn_reset)
    assert evaluation.bn_reset is bn_reset
    X, y = case.data.split("train")
    for i, t in enumerate(np.linspace(0, 1, 5)):
        theta = (1 - t) * a.theta + t * b.theta
        if bn_reset:
            buffers = reestimate_batch_norm(objective, theta)
        else:
            buffers = {
                k: (1 - t) * a.buffers[k] + t * b.buffers[k] if a.buffers[k].is_floating_point() else a.buffers[k]
                for k in a.buffers
            }
        with torch.no_grad():
            expected = F.cross_entropy(reference_model(case, theta, buffers)(X), y)
        assert evaluation.values["train_loss"][i] == pytest.approx(float(expected), abs=TOL)


def test_repair_matches_the_interpolated_statistics_layer_by_layer() -> None:
    g = torch.Generator().manual_seed(2)
    data = as_dataset((torch.randn(40, 4, generator=g, dtype=torch.float64), torch.randint(3, (40,), generator=g)))
    spec = "mlp:4-6-5-3"
    objective = Objective(build_model(spec, seed=0), "cross_entropy", data, dtype="float64")
    a = as_network(objective, objective.model)
    b = as_network(objective, build_model(spec, seed=1))
    repair = Repair(TracedNetwork(objective), a, b)
    X = data.X_train

    def hidden(
        theta: torch.Tensor,
    ) -> list[torch.Tensor]:  # the two hidden pre-activations, by hand
        p = objective.layout.unflatten(theta)
        h1 = X @ p["1.weight"].T + p["1.bias"]
        return [h1, torch.relu(h1) @ p["3.weight"].T + p["3.bias"]]

    def stats(theta: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(h.mean(0), h.std(0, unbiased=False)) for h in hidden(theta)]

    t = 0.3
    corrected = repair((1 - t) * a.theta + t * b.theta, t)
    for (m, s), (ma, sa), (mb, sb) in zip(stats(corrected), stats(a.theta), stats(b.theta), strict=True):
        torch.testing.assert_close(m, (1 - t) * ma + t * mb, rtol=0, atol=1e-10)
        torch.testing.assert_close(s, (1 - t) * sa + t * sb, rtol=0, atol=1e-10)
    torch.testing.assert_close(repair(a.theta, 0.0), a.theta, rtol=0, atol=1e-10)  # A is its own goal


def test_repair_refuses_batch_norm_networks() -> None:
    from conftest import TINY_CASES

    case = next(c for c in TINY_CASES if c.name == "resnet-bn-ce")
    objective, a, b = bn_pair(case)
    with pytest.raises(UserError, match="statistics reset"):
        Repair(TracedNetwork(objective), a, b)


@pytest.fixture(scope="module")
def digits_pair() -> tuple[Objective, Network, Network]:
    spec = "mlp:64-16-10"
    objective = Objective(build_model(spec, seed=0), "cross_entropy", load_data("digits"))
    ensemble = train_ensemble(
        objective,
        TrainConfig(epochs=3),
        thetas=init_thetas(spec, [0, 1], objective),
        seeds=[0, 1],
        test=False,
    )
    a, b = (as_network(objective, torch.as_tensor(th)) for th in ensemble.thetas)
    return objective, a, b


@pytest.mark.parametrize("kind", ["bezier", "chain"])
def test_a_trained_bend_lowers_the_curve_and_never_moves_the_ends(digits_pair, kind: str) -> None:
    objective, a, b = digits_pair
    before = copy.deepcopy((a.theta, b.theta))
    fit = fit_curve(objective, a, b, kind=kind, config=replace(CURVE_CONFIG, epochs=3))
    path = fit.path(a, b)
    points = path.thetas(torch.tensor([0.0, 1.0]))
    assert torch.equal(points[0], before[0]) and torch.equal(points[1], before[1])
    assert torch.equal(a.theta, before[0]) and torch.equal(b.theta, before[1])
    assert not torch.allclose(path.bend, 0.5 * (a.theta + b.theta))
    curve = evaluate_path(objective, path, points=9, test=False)
    line = evaluate_path(objective, Path("line", a, b), points=9, test=False)
    assert curve.values["train_loss"].mean() < line.values["train_loss"].mean()
    assert fit.history["batch_loss"][-1] < fit.history["batch_loss"][0]
    assert fit.steps == 3 * math.ceil(objective.n / 64)  # 3 epochs of ⌈1438 / 64⌉ = 23 steps
