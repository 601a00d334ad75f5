"""Training runs the model as defined (train mode, seeded dropout); batch-norm statistics and
frozen parameters are handled explicitly; analyses say which mode and which parameters they use."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslab.data import as_dataset, load_data
from losslab.errors import UserError
from losslab.models import build_model
from losslab.objective import Objective
from losslab.train import TrainConfig, train, train_ensemble
from losslab.train.randomness import seed_step, step_seed


def _data(n: int = 40, d: int = 5, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    return as_dataset((X, (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()), name="tiny")


def _dropout_net(p: float = 0.5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Dropout(p), nn.Linear(16, 3)).double()


def test_steps_run_in_train_mode_with_dropout_seeded_per_step() -> None:
    data = _data()
    model = _dropout_net()
    obj = Objective(model.eval(), "cross_entropy", data, dtype="float64")
    config = TrainConfig(optimizer="sgd", lr=0.2, batch_size=8, steps=12, seed=4)
    torch.manual_seed(123)
    expected_global = torch.rand(1)
    torch.manual_seed(123)
    result = train(obj, config)
    assert torch.equal(torch.rand(1), expected_global)  # the caller's generator is restored
    # The obvious loop: the module in train mode, the trainer's batch order and per-step seeds.
    ref = _dropout_net().train()
    X, y = data.X_train, data.y_train
    g = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.SGD(ref.parameters(), lr=config.lr)
    per_epoch = config.steps_per_epoch(len(X))
    for step in range(config.steps):
        if step % per_epoch == 0:
            order = torch.randperm(len(X), generator=g)
        index = order[(step % per_epoch) * 8 : (step % per_epoch + 1) * 8]
        seed_step(config.seed, step, torch.device("cpu"))
        opt.zero_grad()
        F.cross_entropy(ref(X[index]), y[index]).backward()
        opt.step()
    flat = torch.cat([p.detach().flatten() for p in ref.parameters()]).numpy()
    # float64, 12 steps of a 147-parameter net: summation-order round-off only
    np.testing.assert_allclose(result.theta, flat, rtol=0, atol=1e-12)
    # Without dropout the same run lands elsewhere: the masks were really applied.
    eval_only = _dropout_net(p=0.0)
    no_dropout = train(Objective(eval_only.eval(), "cross_entropy", data, dtype="float64"), config)
    assert np.abs(no_dropout.theta - result.theta).max() > 1e-3
    again = train(obj, config)
    np.testing.assert_array_equal(again.theta, result.theta)
    np.testing.assert_array_equal(again.history["batch_loss"], result.history["batch_loss"])
    assert result.mode["steps"] == "train" and result.mode["records"] == "eval"
    assert "dropout p=0.5 off in 2" in result.mode["eval_changes"]
    assert result.seeds == {"batch_order": 4, "forward": 4} and result.summary()["seeds"] == result.seeds
    assert not obj.model.training  # the objective's model is left in its mode


def test_per_step_seeds_differ_between_steps_and_runs() -> None:
    seeds = {step_seed(s, t) for s in range(20) for t in range(200)}
    assert len(seeds) == 20 * 200 and all(0 <= v < 2**63 for v in seeds)


def test_ensembles_with_dropout_are_reproducible() -> None:
    obj = Objective(_dropout_net().eval(), "cross_entropy", _data(), dtype="float64")
    config = TrainConfig(lr=0.2, batch_size=8, steps=10)
    thetas = torch.stack([obj.theta0, obj.theta0])
    a = train_ensemble(obj, config, thetas=thetas, seeds=[0, 1])
    b = train_ensemble(obj, config, thetas=thetas, seeds=[0, 1])
    np.testing.assert_array_equal(a.thetas, b.thetas)
    plain = Objective(_dropout_net(p=0.0).eval(), "cross_entropy", _data(), dtype="float64")
    c = train_ensemble(plain, config, thetas=thetas, seeds=[0, 1])
    assert np.abs(c.thetas - a.thetas).max() > 1e-3  # dropout was active in the vmapped steps
    assert a.mode["steps"] == "train" and a.seeds_forward == 0


def test_batch_norm_statistics_never_mix_with_a_trained_theta() -> None:
    data = load_data("digits")
    obj = Objective(build_model("deep:2,width=16,in=64,out=10,residual=1,bn=1"), "cross_entropy", data)
    result = train(obj, TrainConfig(epochs=2, lr=0.05))
    # The README pattern with the objective's initial statistics is refused, naming the fix ...
    with pytest.raises(UserError, match=r"objective\.with_buffers\(result\.buffers\)") as err:
        obj.loss(obj.as_theta(result.theta))
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="with_buffers"):
        obj.loss(torch.as_tensor(result.theta))
    # ... and the fix gives the loss training recorded (the same float32 evaluation).
    trained = obj.with_buffers(result.buffers)  # exactly as the message says (numpy arrays)
    theta = trained.as_theta(result.theta)
    assert float(trained.loss(theta)) == pytest.approx(result.final["loss"], rel=1e-6)
    # θs that were not trained this way (the start, a perturbation) still evaluate as before.
    obj.loss(obj.as_theta(result.theta_init))
    obj.loss(torch.as_tensor(result.theta) + 1e-3)


def test_a_run_directory_rebuilds_the_trained_batch_norm_network(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from losslab import load
    from losslab.cli import app
    from losslab.cli.common import Setup

    out = tmp_path / "bn"
    args = ["train", "--data", "digits", "--model", "deep:1,width=8,in=64,out=10,bn=1", "--epochs", "1"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    run = load(out)
    objective = Setup(checkpoint=str(out)).objective()
    loss = float(objective.loss(objective.as_theta(run.result.theta)))
    assert loss == pytest.approx(run.manifest["result"]["train_loss"], rel=1e-6)


class _Scaled(nn.Module):
    """A tanh MLP times a frozen scale, with (optionally) a layer the forward never uses."""

    def __init__(self, unused: bool) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        self.scale = nn.Parameter(torch.ones(()), requires_grad=False)
        if unused:
            self.spare = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.body(x)


def _regression():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(30, 3, generator=g, dtype=torch.float64)
    return as_dataset((X, torch.sin(X[:, :2] * 2)), name="tiny-regression")


def test_frozen_parameters_stay_out_of_theta_and_keep_their_value() -> None:
    obj = Objective(_Scaled(unused=False).double(), "mse", _regression(), dtype="float64")
    assert obj.dim == 3 * 4 + 4 + 4 * 2 + 2 and obj.frozen == ("scale",)
    assert obj.param_names == ("body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias")
    assert obj.params_summary == {"selection": "trainable", "dim": 26, "tensors": 4, "frozen": ["scale"], "unused": []}
    result = train(obj, TrainConfig(optimizer="gd", lr=0.5, steps=30))
    assert result.params == obj.params_summary
    state = obj.state_dict(result.theta)
    assert float(state["scale"]) == 1.0 and set(state) == set(_Scaled(unused=False).state_dict())
    # The Hessian over the trainable tensors against autograd's dense Hessian of the same function.
    model, data = _Scaled(unused=False).double(), _regression()
    shapes = [p.shape for p in model.body.parameters()]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts = [t.view(s) for t, s in zip(flat.split([s.numel() for s in shapes]), shapes, strict=True)]
        w1, b1, w2, b2 = parts
        out = model.scale * (torch.tanh(data.X_train @ w1.T + b1) @ w2.T + b2)
        return 0.5 * ((out - data.y_train) ** 2).sum(1).mean()

    theta = torch.as_tensor(result.theta)
    dense = torch.autograd.functional.hessian(loss, theta)
    # float64 on 26 parameters: the two differ only by summation order
    torch.testing.assert_close(obj.hessian(theta), dense, rtol=1e-10, atol=1e-12)
    everything = Objective(_Scaled(unused=False).double(), "mse", _regression(), dtype="float64", params="all")
    assert everything.dim == 27 and everything.frozen == ()
    moved = train(everything, TrainConfig(optimizer="gd", lr=0.5, steps=30))
    assert float(everything.state_dict(moved.theta)["scale"]) != 1.0  # params='all' trains it, as asked
    named = Objective(
        _Scaled(unused=False).double(), "mse", _regression(), dtype="float64", params=["body.2.weight", "scale"]
    )
    assert named.param_names == ("scale", "body.2.weight") and named.dim == 9  # in the model's order
    picked = Objective(
        _Scaled(unused=False).double(), "mse", _regression(), dtype="float64", params=lambda n, p: "bias" in n
    )
    assert picked.dim == 6 and picked.params_summary["selection"] == "callable"


def test_bad_param_selections_and_unused_parameters_are_named() -> None:
    with pytest.raises(UserError, match="'params' list of Objective names 'body.9.weight'"):
        Objective(_Scaled(unused=False), "mse", _regression(), params=["body.9.weight"])
    with pytest.raises(UserError, match="'params' parameter of Objective must be 'trainable', 'all'"):
        Objective(_Scaled(unused=False), "mse", _regression(), params="some")
    with pytest.raises(UserError, match="holds no parameter"):
        Objective(_Scaled(unused=False), "mse", _regression(), params=lambda n, p: False)
    with pytest.warns(UserWarning, match=r"do not depend on the parameters 'spare.weight', 'spare.bias'"):
        obj = Objective(_Scaled(unused=True).double(), "mse", _regression(), dtype="float64")
    assert obj.unused_params == ["spare.weight", "spare.bias"] and obj.dim == 26 + 6
    assert obj.params_summary["unused"] == ["spare.weight", "spare.bias"]


class _Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 3)
        self.drop = nn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.lin(x + 0.1 * torch.randn_like(x)))


def test_the_determinism_check_says_what_eval_mode_already_changed() -> None:
    with pytest.raises(UserError, match=r"dropout in training mode .*call model\.eval\(\)"):
        Objective(_Noisy(), "cross_entropy", _data(), dtype="float64")
    with pytest.raises(
        UserError, match=r"the model is in eval mode \(eval mode already turned dropout p=0.3 off in drop\)"
    ):
        Objective(_Noisy().eval(), "cross_entropy", _data(), dtype="float64")


def test_user_functions_that_raise_are_user_errors(tmp_path: Path) -> None:
    (tmp_path / "user.py").write_text(
        textwrap.dedent("""
        def model():
            raise ValueError("width must be even")
        def data():
            raise KeyError("labels")
    """)
    )
    with pytest.raises(UserError, match=r"The model function '.*user.py:model' raised ValueError: width must be even"):
        build_model(f"{tmp_path / 'user.py'}:model")
    with pytest.raises(UserError, match=r"The data function '.*user.py:data' raised KeyError: 'labels'"):
        load_data(f"{tmp_path / 'user.py'}:data")
