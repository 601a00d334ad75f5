"""The GD-vs-SGD study: edge of stability, flatter SGD, λmax and the MSE normalization by hand, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.data import load_data
from losslab.errors import UserError
from losslab.studies import STUDIES, GdVsSgdResult, StudyContext, subset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small() -> GdVsSgdResult:
    study = STUDIES["gd-vs-sgd"]
    config = study.config(
        "quick",
        train_size=400,
        gd_lrs=(0.4, 1.0),
        sgd_lrs=(0.4,),
        batch_sizes=(8, 200),
        steps=400,
        track_every=20,
        points=5,
    )
    return study.run(config, StudyContext())


def test_gd_hovers_at_two_over_lr_and_small_batch_sgd_ends_flatter(small: GdVsSgdResult) -> None:
    assert small.optimizer == ["gd", "gd", "sgd", "sgd"] and small.batch_size.tolist() == [400, 400, 8, 200]
    # Edge of stability (Cohen et al. 2021): over the last half of training GD's sharpness
    # stays within [0.9, 1.35]·2/η, for both step sizes, and it rose before that (η = 0.4).
    half = small.sharpness.shape[1] // 2
    for g, lr in enumerate((0.4, 1.0)):
        late = small.sharpness[g, half:] * lr / 2
        assert np.all((late > 0.9) & (late < 1.35)), late
    assert small.sharpness[0].max() > 1.2 * small.sharpness[0, 0]
    # λmax at the end agrees with the last tracked value (the same θ, two independent Lanczos runs).
    for g in range(2):
        assert small.lambda_max[g] == pytest.approx(small.sharpness[g, -1], rel=1e-3)
    # SGD with batch 8 ends well below the threshold; a large batch ends near GD's.
    assert small.ratio[2] < 0.8 * small.ratio[0]
    assert small.ratio[2] < small.ratio[3]
    # Barriers: SGD runs against the GD run with the same η, the curve ends at both solutions.
    assert small.reference.tolist() == [-1, -1, 0, 0] and np.all(np.isnan(small.barrier[:2]))
    for r in (2, 3):
        assert small.barrier_curve[r, 0] == pytest.approx(small.train_loss[0], rel=1e-5)
        assert small.barrier_curve[r, -1] == pytest.approx(small.train_loss[r], rel=1e-5)
        assert small.barrier[r] >= 0
    summary = small.summary()
    assert len(summary["runs"]) == 4 and len(summary["gd_final_sharpness_over_2_over_lr"]) == 2


def test_lambda_max_and_the_mse_normalization_by_hand() -> None:
    # A model small enough for a dense Hessian (610 parameters), float64.
    study = STUDIES["gd-vs-sgd"]
    config = study.config(
        "quick",
        model="mlp:64-8-10,act=tanh",
        train_size=100,
        gd_lrs=(0.5,),
        sgd_lrs=(0.5,),
        batch_sizes=(10,),
        steps=60,
        track_every=20,
        points=3,
    )
    result = study.run(config, StudyContext(dtype="float64"))
    data = subset(load_data("digits"), 100, 0)
    X, Y = data.X_train.double(), torch.nn.functional.one_hot(data.y_train, 10).double()
    sizes = [(8, 64), (8,), (10, 8), (10,)]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        parts, start = [], 0
        for shape in sizes:
            count = int(np.prod(shape))
            parts.append(theta[start : start + count].view(shape))
            start += count
        W1, b1, W2, b2 = parts
        f = torch.tanh(X @ W1.T + b1) @ W2.T + b2
        return 0.5 * (f - Y).square().sum() / len(X)  # Cohen et al.'s 0.5·Σ/n

    for r in range(2):
        theta = torch.as_tensor(result.thetas[r])
        assert result.train_loss[r] == pytest.approx(float(loss(theta)), rel=1e-12)
        eig = torch.linalg.eigvalsh(torch.func.hessian(loss)(theta))
        assert abs(result.lambda_max[r] - float(eig[-1])) <= result.lambda_max_error[r] + 1e-10 * float(eig[-1])
        assert result.ratio[r] == pytest.approx(result.lambda_max[r] * 0.5 / 2)


def test_settings_are_validated() -> None:
    study = STUDIES["gd-vs-sgd"]
    with pytest.raises(UserError, match="at least one GD step size"):
        study.config("quick", gd_lrs=())
    with pytest.raises(UserError, match="both sgd_lrs and batch_sizes"):
        study.config("quick", batch_sizes=())
    with pytest.raises(UserError, match="'batch_sizes' parameter"):
        study.config("quick", batch_sizes=(0,))


def test_cli_runs_and_loads(tmp_path: Path) -> None:
    out = tmp_path / "gd"
    result = CliRunner().invoke(
        app,
        [
            "study",
            "gd-vs-sgd",
            "--quick",
            "--set",
            "train_size=150",
            "--set",
            "gd_lrs=0.5",
            "--set",
            "sgd_lrs=0.5",
            "--set",
            "batch_sizes=30",
            "--set",
            "steps=40",
            "--set",
            "track_every=10",
            "--set",
            "points=3",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["result"]
    assert [run["optimizer"] for run in summary["runs"]] == ["gd", "sgd"]
    assert "0.5*sum/n" in summary["mse_normalization"]
    assert (out / "figures" / "study-gd-vs-sgd.png").is_file()
    loaded = load(out).result
    assert loaded.sharpness.shape == (1, 4) and loaded.thetas.shape[0] == 2
