"""The random-labels study: direction with a fixed seed set, curvature against a dense Hessian, resume, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.data import load_data
from losslab.errors import UserError
from losslab.studies import STUDIES, RandomLabelsResult, StudyContext, subset

pytestmark = pytest.mark.usefixtures("one_thread")


# 200 digits rows, a 64-128-10 MLP (9,610 parameters: overparameterized 4.8× per label).
SMALL = {"model": "mlp:64-128-10", "train_size": 200, "lr": 0.02, "batch_size": 32, "epochs": 200}


@pytest.fixture(scope="module")
def small() -> RandomLabelsResult:
    study = STUDIES["random-labels"]
    config = study.config("quick", fractions=(0.0, 0.5, 1.0), seeds=2, **SMALL)
    return study.run(config, StudyContext(dtype="float64"))


def test_more_random_labels_fit_later_and_generalize_worse(small: RandomLabelsResult) -> None:
    # Seeds 0 and 1. Every fraction is fitted (the network memorizes even fully random labels) …
    assert np.all(small.best_train_accuracy == 1.0) and np.all(np.isfinite(small.epochs_to_fit))
    assert small.summary()["fits_random_labels"] is True
    # … but clean labels fit at least twice as fast as any corrupted ones, for every seed.
    assert np.all(small.epochs_to_fit[0] * 2 <= small.epochs_to_fit[1:].min(0))
    # Test accuracy falls with p, to chance (10 classes) for fully random labels.
    test = small.mean("test_accuracy")
    assert test[0] > 0.85 and test[0] > test[1] + 0.2 > test[2] + 0.2 and abs(test[2] - 0.1) < 0.08
    # The memorizing solution is sharper: larger λmax and trace, beyond their error bars.
    assert np.all(small.lambda_max[2] - small.lambda_max_error[2] > small.lambda_max[0] + small.lambda_max_error[0])
    assert np.all(small.trace[2] - 3 * small.trace_stderr[2] > 2 * (small.trace[0] + 3 * small.trace_stderr[0]))
    # Accuracy curves: recorded once per epoch until every seed fitted, NaN after.
    fit_records = np.isfinite(small.accuracy_curve).sum(1)
    assert np.all(fit_records == small.epochs_to_fit.max(1) + 1)


def test_curvature_matches_the_dense_hessian() -> None:
    # A model small enough for a dense Hessian (1,210 parameters) fitted to fully random labels.
    study = STUDIES["random-labels"]
    config = study.config("quick", fractions=(1.0,), seeds=1, **{**SMALL, "model": "mlp:64-16-10", "train_size": 60})
    result = study.run(config, StudyContext(dtype="float64"))
    assert result.best_train_accuracy[0, 0] == 1.0
    # Independent reference: the Hessian of a hand-written MLP loss by torch.func.
    data = subset(load_data("digits"), 60, 0).with_label_noise(1.0, 0)
    X, y = data.X_train.double(), data.y_train
    sizes = [(16, 64), (16,), (10, 16), (10,)]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        parts, start = [], 0
        for shape in sizes:
            count = int(np.prod(shape))
            parts.append(theta[start : start + count].view(shape))
            start += count
        W1, b1, W2, b2 = parts
        return torch.nn.functional.cross_entropy(torch.relu(X @ W1.T + b1) @ W2.T + b2, y)

    theta = torch.as_tensor(result.thetas[0, 0])
    eig = torch.linalg.eigvalsh(torch.func.hessian(loss)(theta))
    # λmax: within its reported error bound (plus float64 round-off of the dense eigensolve).
    assert abs(result.lambda_max[0, 0] - float(eig[-1])) <= result.lambda_max_error[0, 0] + 1e-10 * float(eig[-1])
    # Trace: Hutchinson's estimate within 4 standard errors (a Gaussian tail of 6e-5; the seed is fixed).
    assert abs(result.trace[0, 0] - float(eig.sum())) <= 4 * result.trace_stderr[0, 0]
    assert result.trace_stderr[0, 0] <= 0.03 * abs(result.trace[0, 0]) or result.hvps[0, 0] >= 300


def test_settings_are_validated() -> None:
    study = STUDIES["random-labels"]
    with pytest.raises(UserError, match="'fractions' parameter of the random-labels study"):
        study.config("quick", fractions=(0.0, 1.5))
    with pytest.raises(UserError, match="at least one fraction"):
        study.config("quick", fractions=())
    result = CliRunner().invoke(app, ["study", "random-labels", "--quick", "--data", "teacher", "--set", "epochs=1"])
    assert result.exit_code == 2 and "regression task" in result.stderr


TINY = [
    "fractions=0,0.2,0.4,0.6,0.8,1",
    "model=mlp:64-64-10",
    "train_size=120",
    "lr=0.02",
    "batch_size=30",
    "epochs=150",
    "seeds=1",
    "trace_hvps=40",
]


def _command(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "losslab.cli",
        "study",
        "random-labels",
        "--quick",
        *[arg for item in TINY for arg in ("--set", item)],
        "--out",
        str(out),
        "--json",
    ]


def test_a_killed_study_resumes_bit_identically(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = killed / "chunks" / "random-labels"
    deadline = time.time() + 120
    while len(list(chunks.glob("0*.npz"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(chunks.glob("0*.npz")))
    assert 2 <= done < 6, "the study must die mid-sweep for this test to mean anything"
    assert json.loads((killed / "run.json").read_text())["status"] == "running"
    subprocess.run(_command(killed), env=env, check=True, stdout=subprocess.DEVNULL)
    clean = tmp_path / "clean"
    subprocess.run(_command(clean), env=env, check=True, stdout=subprocess.DEVNULL)
    a, b = load(killed), load(clean)
    assert a.manifest["resumed"] and a.status == "complete"
    for field in ("epochs_to_fit", "test_accuracy", "lambda_max", "trace", "trace_stderr", "thetas"):
        assert getattr(a.result, field).tobytes() == getattr(b.result, field).tobytes(), field
    assert (killed / "figures" / "study-random-labels.png").is_file()
