"""The trainer against hand-written torch.optim loops, and seed ensembles against single runs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losslab.data import load_data
from losslab.errors import UserError
from losslab.models import build_model
from losslab.objective import Objective
from losslab.train import TrainConfig, TrainState, init_thetas, train, train_ensemble

DATA = load_data("teacher:n=60,d=4,hidden=3,out=3,task=classification")
SPEC = "mlp:4-6-3,act=tanh"


def torch_reference(config: TrainConfig, seed: int) -> np.ndarray:
    """The same run written the obvious way: nn.Module, torch.optim, the same batch order."""
    model = build_model(SPEC, seed=seed).double()
    X, y = DATA.X_train.double(), DATA.y_train
    n, rows = len(X), config.batch_rows(len(X))
    params = list(model.parameters())
    if config.optimizer == "adam":
        opt = torch.optim.Adam(
            params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay
        )
    else:
        momentum = config.momentum if config.optimizer == "momentum" else 0.0
        opt = torch.optim.SGD(params, lr=config.lr, momentum=momentum, weight_decay=config.weight_decay)
    total = config.total_steps(n)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: config.lr_at(t, total) / config.lr)
    g = torch.Generator().manual_seed(config.seed)
    order = None
    for step in range(total):
        position = step % config.steps_per_epoch(n)
        if position == 0:
            order = torch.arange(n) if rows == n else torch.randperm(n, generator=g)
        index = order[position * rows : (position + 1) * rows]
        opt.zero_grad()
        F.cross_entropy(model(X[index]), y[index]).backward()
        opt.step()
        sched.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()


CONFIGS = [
    TrainConfig(optimizer="sgd", lr=0.3, batch_size=16, epochs=4, seed=1),
    TrainConfig(optimizer="momentum", lr=0.05, momentum=0.9, batch_size=7, epochs=3, weight_decay=1e-2, seed=2),
    TrainConfig(optimizer="adam", lr=0.01, batch_size=10, epochs=3, weight_decay=1e-3, schedule="cosine", seed=3),
    TrainConfig(optimizer="gd", lr=0.5, epochs=10, schedule="cosine"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.optimizer)
def test_single_run_matches_a_torch_optim_loop(config: TrainConfig) -> None:
    obj = Objective(build_model(SPEC, seed=5), "cross_entropy", DATA, dtype="float64")
    result = train(obj, config)
    # float64, ≤ 50 steps of a 45-parameter net: only summation-order round-off differs
    np.testing.assert_allclose(result.theta, torch_reference(config, seed=5), rtol=0, atol=1e-12)
    assert result.steps == config.total_steps(obj.n) and result.stopped == "budget"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.optimizer)
def test_ensemble_members_match_single_runs_at_float64(config: TrainConfig) -> None:
    obj = Objective(build_model(SPEC), "cross_entropy", DATA, dtype="float64")
    seeds = [11, 12, 13]
    thetas = init_thetas(SPEC, seeds, obj)
    ensemble = train_ensemble(obj, config, thetas=thetas, seeds=seeds)
    for k, seed in enumerate(seeds):
        alone = train(obj, replace(config, seed=seed), theta=thetas[k])
        # vmapped and plain autograd differ only in summation order: float64 round-off
        np.testing.assert_allclose(ensemble.thetas[k], alone.theta, rtol=0, atol=1e-13)
        np.testing.assert_allclose(ensemble.history["loss"][:, k], alone.history["loss"], rtol=1e-12, atol=0)


def test_ensemble_matches_single_runs_at_float32_on_digits() -> None:
    data = load_data("digits")
    obj = Objective(build_model("mlp:64-32-10"), "cross_entropy", data)
    config = TrainConfig(epochs=2, lr=0.1, batch_size=64)
    thetas = init_thetas("mlp:64-32-10", [0, 1], obj)
    ensemble = train_ensemble(obj, config, thetas=thetas, seeds=[0, 1])
    alone = train(obj, replace(config, seed=1), theta=thetas[1])
    # 46 float32 steps: differences stay at a few ulps of the weights (|θ| ≲ 1)
    np.testing.assert_allclose(ensemble.thetas[1], alone.theta, rtol=0, atol=5e-6)


def test_targets_stop_members_independently_and_records_are_complete() -> None:
    obj = Objective(build_model(SPEC), "cross_entropy", DATA, dtype="float64")
    config = TrainConfig(optimizer="gd", lr=1.0, epochs=200, target_accuracy=0.9)
    seeds = [0, 1, 2, 3]
    ensemble = train_ensemble(obj, config, thetas=init_thetas(SPEC, seeds, obj), seeds=seeds)
    for k in range(len(seeds)):
        member = ensemble.member(k)
        alone = train(obj, config, theta=init_thetas(SPEC, [seeds[k]], obj)[0])
        assert member.stopped == alone.stopped
        assert member.steps == alone.steps
        if alone.stopped == "target":
            assert alone.final["accuracy"] >= 0.9
    history = ensemble.history
    assert history["loss"].shape == (len(history["step"]), len(seeds))
    assert set(history) >= {
        "step",
        "epoch",
        "loss",
        "accuracy",
        "test_loss",
        "test_accuracy",
        "grad_norm",
        "batch_loss",
        "lr",
    }


def test_snapshots_callbacks_and_divergence() -> None:
    obj = Objective(build_model(SPEC), "cross_entropy", DATA, dtype="float64")
    seen = []

    class Stopper:
        def on_record(self, state: TrainState) -> None:
            seen.append((state.step, float(state.record["loss"][0])))
            state.stop = state.step >= 8

    result = train(
        obj, TrainConfig(optimizer="gd", lr=0.5, epochs=50, record_every=4, snapshot_every=2), callbacks=[Stopper()]
    )
    assert result.stopped == "callback" and result.steps == 8
    assert result.snapshot_steps.tolist() == [0, 2, 4, 6, 8]
    assert result.snapshots.dtype == np.float32 and result.snapshots.shape == (5, obj.dim)
    np.testing.assert_allclose(result.snapshots[-1], result.theta, rtol=0, atol=1e-6)
    assert [s for s, _ in seen] == [4, 8]
    regression = Objective(build_model("mlp:10-8-1"), "mse", load_data("teacher:n=40"))
    diverged = train(regression, TrainConfig(optimizer="gd", lr=50.0, epochs=200))
    assert diverged.stopped == "diverged" and diverged.steps < 200
    assert np.isfinite(diverged.theta).all()  # the last finite point is kept


def test_batch_norm_trains_in_train_mode_and_evaluates_in_eval_mode() -> None:
    data = load_data("digits")
    obj = Objective(build_model("deep:2,width=16,in=64,out=10,residual=1,bn=1"), "cross_entropy", data)
    before = {k: v.clone() for k, v in obj.buffers.items()}
    result = train(obj, TrainConfig(epochs=2, lr=0.05))
    assert result.final["accuracy"] > 0.5
    assert all(torch.equal(before[k], v) for k, v in obj.buffers.items())  # the objective is untouched
    trained = result.buffers["blocks.0.norm.running_mean"]
    assert not np.array_equal(before["blocks.0.norm.running_mean"].numpy(), trained)
    final = obj.with_buffers({k: torch.as_tensor(v) for k, v in result.buffers.items()}).metrics(result.theta)
    assert final["accuracy"] == pytest.approx(result.final["accuracy"], abs=1e-6)  # records used the trained statistics
    assert not obj.model.training
    with pytest.raises(UserError, match="do not support batch norm"):
        train_ensemble(obj, TrainConfig(epochs=1), thetas=obj.theta0[None], seeds=[0])


def test_bad_configs() -> None:
    with pytest.raises(UserError, match="'optimizer' parameter of train must be one of"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(UserError, match="'lr' parameter of train must be a finite number > 0"):
        TrainConfig(lr=0)
    with pytest.raises(UserError, match="'batch_size'"):
        TrainConfig(batch_size=0)
    obj = Objective(build_model(SPEC), "cross_entropy", DATA)
    with pytest.raises(UserError, match="one row per seed"):
        train_ensemble(obj, TrainConfig(), thetas=torch.zeros(2, obj.dim), seeds=[0])


def test_ensembles_train_mse_on_class_labels() -> None:
    data = load_data("xor")
    obj = Objective(build_model("mlp:2-2-2,act=tanh"), "mse", data, dtype="float64")
    config = TrainConfig(optimizer="gd", lr=0.5, epochs=20)
    thetas = init_thetas("mlp:2-2-2,act=tanh", [0, 1], obj)
    ensemble = train_ensemble(obj, config, thetas=thetas, seeds=[0, 1])
    alone = train(obj, replace(config, seed=1), theta=thetas[1])
    np.testing.assert_allclose(ensemble.thetas[1], alone.theta, rtol=0, atol=1e-13)
