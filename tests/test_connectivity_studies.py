"""Instability analysis, the width study, and connectivity results on disk and in figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from losslab import load
from losslab.connectivity import (
    ConnectResult,
    InstabilityResult,
    WidthResult,
    connect,
    instability,
    width_study,
)
from losslab.data import as_dataset
from losslab.errors import UserError
from losslab.models import build_model
from losslab.objective import Objective
from losslab.report import figures_of
from losslab.store import Chunks, RunDir
from losslab.train import TrainConfig


def tiny_data(n: int = 48, d: int = 5, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    return as_dataset((X, (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()), name="tiny")


def tiny_objective(spec: str = "mlp:5-8-3") -> Objective:
    return Objective(build_model(spec, seed=0), "cross_entropy", tiny_data(), dtype="float64")


def test_full_batch_gradient_descent_is_stable_at_every_split() -> None:
    # GD has no SGD noise: both copies follow the same path, so every barrier is round-off.
    objective = tiny_objective()
    result = instability(objective, TrainConfig(optimizer="gd", lr=0.2, steps=8), [0, 3, 6], points=5)
    assert result.ks.tolist() == [0, 3, 6] and result.total_steps == 8
    for curve in result.curves:
        assert result.curves[curve].shape == (3, 5)
        assert np.abs(result.barrier(curve, "linear")).max() <= 1e-12, curve
    assert result.summary()["stable_from_k"] == 0


def test_sgd_copies_differ_and_a_killed_run_resumes_bit_identically(tmp_path) -> None:
    objective = tiny_objective()
    config = TrainConfig(lr=0.2, batch_size=8, steps=24)
    key = {"test": "resume"}
    first = instability(objective, config, [0, 6, 12], points=5, chunks=Chunks(tmp_path / "c", key))
    assert first.barrier("train_loss", "mean").max() > 0  # different batch orders, different endpoints
    (tmp_path / "c" / "000001.npz").unlink()  # as if the run died before the second split finished
    again = instability(objective, config, [0, 6, 12], points=5, chunks=Chunks(tmp_path / "c", key))
    for curve in first.curves:
        assert np.array_equal(first.curves[curve], again.curves[curve])


def test_instability_with_batch_norm_keeps_the_objective_untouched() -> None:
    objective = Objective(
        build_model("deep:1,width=6,in=5,out=3,bn=1", seed=0),
        "cross_entropy",
        tiny_data(),
        dtype="float64",
    )
    before = {k: v.clone() for k, v in objective.buffers.items()}
    result = instability(objective, TrainConfig(lr=0.1, batch_size=16, steps=6), [0, 3], points=3)
    assert result.curves["train_loss"].shape == (2, 3)
    for k, v in objective.buffers.items():
        assert torch.equal(v, before[k]), k


def test_instability_rejects_bad_split_steps_and_seeds() -> None:
    objective = tiny_objective()
    with pytest.raises(UserError, match=r"must lie in \[0, 8\)"):
        instability(objective, TrainConfig(optimizer="gd", steps=8), [0, 8])
    with pytest.raises(UserError, match="two different batch-order seeds"):
        instability(objective, TrainConfig(optimizer="gd", steps=8), [0], seeds=(1, 1))


def test_width_study_shapes_and_endpoints() -> None:
    data = tiny_data(n=64)
    result = width_study(data, [4, 8], config=TrainConfig(lr=0.2, batch_size=16, steps=30), points=5, dtype="float64")
    assert result.widths.tolist() == [4, 8] and result.models[0] == "mlp:5-4-4-3,act=relu"
    for method in ("none", "weight", "activation"):
        assert result.curves[method]["train_loss"].shape == (2, 5)
        assert result.barrier(method).shape == (2,)
    # Aligning permutes B only: both paths start at A exactly and end at B's loss to round-off.
    none, weight = result.curves["none"]["train_loss"], result.curves["weight"]["train_loss"]
    assert np.array_equal(none[:, 0], weight[:, 0])
    np.testing.assert_allclose(none[:, -1], weight[:, -1], rtol=0, atol=1e-12)
    assert (result.align_seconds["weight"] > 0).all() and "none" not in result.align_seconds


def saved_and_loaded(tmp_path, result):
    run = RunDir.create(tmp_path / type(result).__name__, command="test", config={})
    run.save_result("r", result)
    run.complete(result.summary())
    return load(run.path)["r"]


def test_results_survive_the_store_and_draw_themselves(tmp_path) -> None:
    objective = tiny_objective()
    b = build_model("mlp:5-8-3", seed=1)
    connected = connect(
        objective,
        objective.model,
        b,
        align="weight",
        repair=True,
        path="bezier",
        points=5,
        curve_config=TrainConfig(optimizer="momentum", lr=0.05, epochs=2),
    )
    assert set(connected.paths) == {"naive", "aligned", "repair", "curve"}
    # Five split steps: the figure shades one curve per step (a float round-off once broke it).
    config = TrainConfig(lr=0.2, batch_size=16, steps=8)
    unstable = instability(objective, config, [0, 1, 2, 4, 6], points=3)
    wide = width_study(tiny_data(), [3], methods=("none", "weight"), config=TrainConfig(steps=5), points=3)
    for result, kind in (
        (connected, ConnectResult),
        (unstable, InstabilityResult),
        (wide, WidthResult),
    ):
        back = saved_and_loaded(tmp_path, result)
        assert isinstance(back, kind)
        assert back.summary() == result.summary()
        figures = figures_of(back)
        assert figures and all(f.static is not None and f.interactive is not None for f in figures)
    back = saved_and_loaded(tmp_path / "again", connected)
    np.testing.assert_array_equal(back.alignment.theta, connected.alignment.theta)
    np.testing.assert_array_equal(back.curve.bend, connected.curve.bend)
