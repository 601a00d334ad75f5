"""Connectivity results on disk and in figures (the instability and width studies moved to tests/test_studies_*)."""

from __future__ import annotations

import numpy as np
import torch

from losslab import load
from losslab.connectivity import ConnectResult, connect
from losslab.data import as_dataset
from losslab.models import build_model
from losslab.objective import Objective
from losslab.report import figures_of
from losslab.store import RunDir
from losslab.train import TrainConfig


def tiny_data(n: int = 48, d: int = 5, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    return as_dataset((X, (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()), name="tiny")


def tiny_objective(spec: str = "mlp:5-8-3") -> Objective:
    return Objective(build_model(spec, seed=0), "cross_entropy", tiny_data(), dtype="float64")


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
    back = saved_and_loaded(tmp_path, connected)
    assert isinstance(back, ConnectResult)
    assert back.summary() == connected.summary()
    figures = figures_of(back)
    assert figures and all(f.static is not None and f.interactive is not None for f in figures)
    back = saved_and_loaded(tmp_path / "again", connected)
    np.testing.assert_array_equal(back.alignment.theta, connected.alignment.theta)
    np.testing.assert_array_equal(back.curve.bend, connected.curve.bend)
