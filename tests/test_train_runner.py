"""``losslab train`` and its Python equivalent (`losslab.train.run`) give identical arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import losslab
from losslab import load
from losslab.cli import app
from losslab.errors import UserError
from losslab.store import RunDir
from losslab.train import TrainConfig, TrainRun, run

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _same_history(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_one_run_with_sharpness_tracking_matches_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["--data", "xor", "--model", "mlp:2-8-2,act=tanh", "--optimizer", "gd", "--batch-size", "0"]
    result = invoke(
        "train", *args, "--lr", "0.5", "--steps", "20", "--seed", "3", "--track-sharpness", "5", "--out", out
    )
    assert result.exit_code == 0, result.stderr
    cli = load(out)
    # The README's Python equivalent of that command:
    objective = losslab.Objective(
        losslab.build_model("mlp:2-8-2,act=tanh", seed=3), "cross_entropy", losslab.load_data("xor")
    )
    config = TrainRun(TrainConfig(optimizer="gd", batch_size=None, lr=0.5, steps=20, seed=3), track_sharpness=5)
    store = RunDir.create(tmp_path / "py", command="train", config={})
    output = run(objective, config, store=store)
    mine, theirs = output.results["train"], cli["train"]
    np.testing.assert_array_equal(mine.theta, theirs.theta)
    np.testing.assert_array_equal(mine.snapshots, theirs.snapshots)
    _same_history(mine.history, theirs.history)
    np.testing.assert_array_equal(output.results["sharpness"].lambda_max, cli["sharpness"].lambda_max)
    for name in ("model.pt", "init.pt"):
        a = torch.load(store.path / name, weights_only=True)
        b = torch.load(out / name, weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert output.summary["sharpness"]["points"] == 5 and output.summary["train_loss"] == mine.final["loss"]


def test_an_ensemble_matches_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    spec = "mlp:2-4-2,act=tanh"
    result = invoke(
        "train", "--data", "xor", "--model", spec, "--seeds", "3", "--batch-size", "0", "--lr", "0.5",
        "--epochs", "30", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    objective = losslab.Objective(losslab.build_model(spec, seed=0), "cross_entropy", losslab.load_data("xor"))
    config = TrainRun(TrainConfig(batch_size=None, lr=0.5, epochs=30), seeds=3)
    thetas = losslab.init_thetas(spec, config.member_seeds, objective)
    ensemble = run(objective, config, thetas=thetas).results["ensemble"]
    cli = load(out)["ensemble"]
    np.testing.assert_array_equal(ensemble.thetas, cli.thetas)
    _same_history(ensemble.history, cli.history)


def test_run_configs_are_validated_once() -> None:
    with pytest.raises(UserError, match="'seeds' parameter of train must be an int ≥ 1"):
        TrainRun(seeds=0)
    with pytest.raises(UserError, match="follows one run"):
        TrainRun(seeds=2, track_sharpness=3)
    with pytest.raises(UserError, match="'track_sharpness' parameter of train"):
        TrainRun(track_sharpness=0)
    assert TrainRun(TrainConfig(seed=4), seeds=3).member_seeds == [4, 5, 6]
