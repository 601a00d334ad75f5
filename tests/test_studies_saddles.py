"""The saddles study: a plateau at the start that is a certified saddle, checked against a dense Hessian; the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.data import load_data
from losslab.errors import UserError
from losslab.studies import STUDIES, SaddlesResult, StudyContext, subset

pytestmark = pytest.mark.usefixtures("one_thread")


# A tanh MLP with two hidden layers of 8 (682 parameters, small enough for a dense Hessian)
# on 200 digits rows, from 2 % of its initialization: full-batch GD sits on the plateau
# near θ = 0 for a while, then escapes.
TINY = {
    "model": "mlp:64-8-8-10,act=tanh",
    "train_size": 200,
    "init_scale": 0.02,
    "lr": 0.5,
    "steps": 1200,
    "checkpoints": 24,
}


@pytest.fixture(scope="module")
def tiny() -> SaddlesResult:
    study = STUDIES["saddles"]
    return study.run(study.config("quick", **TINY), StudyContext(dtype="float64"))


def test_training_starts_on_a_saddle_plateau_and_leaves_it(tiny: SaddlesResult) -> None:
    assert tiny.steps.tolist() == list(range(0, 1201, 50))
    spans = tiny.plateau_spans()
    assert spans and spans[0][0] <= 100, spans  # the plateau near θ = 0, early in the run
    on = tiny.plateau
    # On the plateau the network predicts the class priors: the loss is their entropy, far above the end.
    priors = np.bincount(subset(load_data("digits"), 200, 0).y_train.numpy(), minlength=10) / 200
    entropy = -float((priors * np.log(priors)).sum())
    assert entropy < math.log(10) and np.all(np.abs(tiny.loss[on] - entropy) < 0.005), (tiny.loss[on], entropy)
    assert tiny.loss[-1] < 0.1 * tiny.loss[on].min()
    # Every plateau checkpoint is a certified saddle with strong negative curvature; the end is not a plateau.
    assert np.all(tiny.count_lower[on] >= 1) and all(tiny.verdict[i] == "saddle" for i in np.flatnonzero(on))
    assert np.all(tiny.ratio[on] >= 0.05) and not on[-1]
    late = tiny.ratio[-len(tiny.steps) // 4 :]  # the last quarter of the run
    assert np.median(late) < 0.5 * tiny.ratio[on].min()
    summary = tiny.summary()
    assert summary["plateau_checkpoints"] == int(on.sum()) and summary["plateaus"][0][0] == spans[0][0]


def test_checkpoint_numbers_match_a_dense_hessian(tiny: SaddlesResult) -> None:
    data = subset(load_data("digits"), 200, 0)
    X, y = data.X_train.double(), data.y_train
    sizes = [(8, 64), (8,), (8, 8), (8,), (10, 8), (10,)]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        parts, start = [], 0
        for shape in sizes:
            count = int(np.prod(shape))
            parts.append(theta[start : start + count].view(shape))
            start += count
        W1, b1, W2, b2, W3, b3 = parts
        h = torch.tanh(torch.tanh(X @ W1.T + b1) @ W2.T + b2)
        return torch.nn.functional.cross_entropy(h @ W3.T + b3, y)

    first_plateau = int(np.flatnonzero(tiny.plateau)[0])
    for i in (first_plateau, len(tiny.steps) - 1):
        theta = torch.as_tensor(tiny.snapshots[i]).double()
        grad, value = torch.func.grad_and_value(loss)(theta)
        eig = torch.linalg.eigvalsh(torch.func.hessian(loss)(theta))
        assert tiny.loss[i] == pytest.approx(float(value), rel=1e-12)
        assert tiny.grad_norm[i] == pytest.approx(float(grad.norm()), rel=1e-9)
        # Lanczos extremes: within their residuals of the dense ones (+ float64 round-off),
        # and the bottom Ritz value never below the true λmin (interlacing).
        scale = float(eig.abs().max())
        assert abs(tiny.lambda_max[i] - float(eig[-1])) <= 1e-5 * scale + 1e-12
        assert abs(tiny.lambda_min[i] - float(eig[0])) <= tiny.lambda_min_residual[i] + 1e-10 * scale
        assert tiny.lambda_min[i] >= float(eig[0]) - 1e-10 * scale
        # The certified count is a lower bound on the exact number of eigenvalues below −τ.
        exact = int((eig < -tiny.tau[i]).sum())
        assert tiny.count_lower[i] <= exact
        assert tiny.index_low[i] <= tiny.index[i] <= tiny.index_high[i]


def test_settings_are_validated() -> None:
    study = STUDIES["saddles"]
    with pytest.raises(UserError, match="'checkpoints' parameter of the saddles study"):
        study.config("quick", steps=10, checkpoints=20)
    with pytest.raises(UserError, match="'init_scale' parameter"):
        study.config("quick", init_scale=0.0)
    with pytest.raises(UserError, match="'optimizer' parameter"):
        study.config("quick", optimizer="lbfgs")


def test_cli_runs_and_loads(tmp_path: Path) -> None:
    out = tmp_path / "saddles"
    result = CliRunner().invoke(
        app,
        [
            "study",
            "saddles",
            "--quick",
            "--model",
            "mlp:64-8-8-10,act=tanh",
            "--set",
            "train_size=100",
            "--set",
            "steps=60",
            "--set",
            "checkpoints=3",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["result"]["checkpoints"] == 4
    assert (out / "figures" / "study-saddles.png").is_file()
    assert load(out).result.snapshots.shape == (4, 682)
