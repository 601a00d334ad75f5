"""The batch-size study: the line's endpoints, sharpness against direct calls, Dinh's rescaling, resume, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import kill_mid_sweep_then_resume
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.curvature import adaptive_sharpness, epsilon_sharpness, hessian_operator, lanczos
from losslab.data import load_data
from losslab.errors import UserError
from losslab.models import build_model
from losslab.objective import Objective
from losslab.studies import STUDIES, StudyContext, subset
from losslab.studies.batch_size import BatchSizeData, BatchSizeLine, BatchSizeResult

pytestmark = pytest.mark.usefixtures("one_thread")


SMALL = {"train_size": 300, "batch_sizes": (10, 150), "seeds": 2, "epochs": 300, "alphas": 7, "ascent_steps": 6}


@pytest.fixture(scope="module")
def small() -> BatchSizeResult:
    study = STUDIES["batch-size"]
    return study.run(study.config("quick", **SMALL), StudyContext(dtype="float64"))


def test_the_line_ends_at_the_two_solutions(small: BatchSizeResult) -> None:
    data = small.dataset("digits")
    line = data.line
    assert line.alphas.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0]
    # α = 0 and α = 1 are the endpoints themselves: (1 − 0)·x + 0·y = x in floating point, one evaluation call.
    for alpha, b in ((0.0, 0), (1.0, -1)):
        i = int(np.flatnonzero(line.alphas == alpha)[0])
        assert line.train_loss[i] == data.train_loss[b, 0]
        assert line.test_loss[i] == data.test_loss[b, 0]
        assert 1 - line.train_accuracy[i] == data.train_error[b, 0]
    # An independent evaluation of both ends (module loaded with θ, plain cross-entropy), float64.
    rows = subset(load_data("digits"), 300, 0)
    model = build_model(data.model).double()
    for b in (0, -1):
        torch.nn.utils.vector_to_parameters(torch.as_tensor(data.thetas[b, 0]), model.parameters())
        with torch.no_grad():
            value = torch.nn.functional.cross_entropy(model(rows.X_train.double()), rows.y_train)
        assert data.train_loss[b, 0] == pytest.approx(float(value), rel=1e-10)  # summation order only
    # Both batch sizes were trained to the same fit (the target), so their sharpness is comparable.
    assert np.all(data.train_loss <= 0.02)
    assert data.lrs.tolist() == pytest.approx([0.05, 0.05 * np.sqrt(15)])


def test_sharpness_equals_direct_calls_and_only_adaptive_survives_rescaling(small: BatchSizeResult) -> None:
    data = small.dataset("digits")
    cfg = small.config
    objective = Objective(
        build_model(data.model), "cross_entropy", subset(load_data("digits"), 300, 0), dtype="float64"
    )
    for b in (0, 1):
        theta = torch.as_tensor(data.thetas[b, 1])
        top = lanczos(hessian_operator(objective, theta), 1, tol=cfg["lanczos_tol"], seed=cfg["seed"])
        eps = epsilon_sharpness(objective, theta, eps=cfg["eps"], steps=cfg["ascent_steps"], seed=cfg["seed"])
        ada = adaptive_sharpness(objective, theta, rho=cfg["rho"], steps=cfg["ascent_steps"], seed=cfg["seed"])
        # The same calls in float64 on the same θ; the objective's product path is picked by timing,
        # so allow round-off of a different path (1e-9 relative), nothing more.
        assert data.lambda_max[b, 1] == pytest.approx(float(top.eigenvalues[0]), rel=1e-9)
        assert data.epsilon_sharpness[b, 1] == pytest.approx(eps.value, rel=1e-9)
        assert data.adaptive_sharpness[b, 1] == pytest.approx(ada.value, rel=1e-9)
    # Dinh et al. 2017: the rescaled large-batch θ computes the same function (same loss), its λmax and
    # ε-sharpness move by a large factor, its adaptive sharpness does not: the ascent in u = δ/|θ| sees
    # the same function of u, so only float64 round-off of products at other magnitudes differs (1e-6).
    line = data.line
    assert line.rescaled_loss == pytest.approx(data.train_loss[-1, 0], rel=1e-10)
    assert line.rescaled_lambda_max > 2 * data.lambda_max[-1, 0]
    assert line.rescaled_epsilon_sharpness > 1.3 * data.epsilon_sharpness[-1, 0]
    assert line.rescaled_adaptive_sharpness == pytest.approx(data.adaptive_sharpness[-1, 0], rel=1e-6)
    verdict = data.verdict()
    assert set(verdict) == {
        "lambda_max",
        "epsilon_sharpness",
        "adaptive_sharpness",
        "test_error",
        "same_fit",
        "supports",
    }
    assert verdict["same_fit"] is True and data.reached_target.all()  # every run stopped at the 0.02 target
    assert not verdict["supports"].startswith("neither: not compared")


def _data(reached: np.ndarray, target: float | None = 0.02) -> BatchSizeData:
    # Two batch sizes, four seeds: the large batch is sharper by every measure and tests worse.
    small, large = np.full(4, 1.0), np.full(4, 5.0)
    spread = np.array([0.0, 0.01, 0.02, 0.03])
    arr = np.stack([small + spread, large + spread])
    zeros = {"rescaled_loss": 0.0, "rescaled_lambda_max": 0.0}
    zeros |= {"rescaled_epsilon_sharpness": 0.0, "rescaled_adaptive_sharpness": 0.0}
    line = BatchSizeLine(*(np.zeros(3) for _ in range(5)), rescale=4.0, **zeros)
    return BatchSizeData(
        data="digits", model="mlp:64-8-10", n_train=10, batch_sizes=np.array([16, 512]), lrs=np.array([0.05, 0.05]),
        seeds=np.arange(4), train_loss=arr / 100, train_error=arr / 100, test_loss=arr, test_error=arr / 10,
        lambda_max=arr, epsilon_sharpness=arr, adaptive_sharpness=arr, thetas=np.zeros((2, 4, 3)), line=line,
        target_loss=target, reached_target=reached,
    )  # fmt: skip


def test_the_verdict_refuses_a_comparison_at_different_fits() -> None:
    same = _data(np.ones((2, 4), dtype=bool)).verdict()
    assert same["same_fit"] is True and same["supports"].startswith("Keskar et al. 2017")
    missed = np.ones((2, 4), dtype=bool)
    missed[1, [0, 2]] = False  # two large-batch runs ran out of epochs above the target
    verdict = _data(missed).verdict()
    assert verdict["same_fit"] is False and verdict["lambda_max"] == "higher"  # the measurements stay
    assert verdict["supports"].startswith("neither: not compared at the same fit (2 of 4 runs at batch 512 stopped")
    assert _data(missed).summary()["batch_sizes"][1]["reached_target"] == 0.5
    # No target (a fixed budget for every batch size) or a run saved before the field existed: no claim either way.
    assert _data(missed, target=None).verdict()["same_fit"] is None
    assert _data(None).verdict()["same_fit"] is None


def test_seeds_are_reproducible_and_distinct() -> None:
    study = STUDIES["batch-size"]
    config = study.config("quick", train_size=150, batch_sizes=(10, 75), seeds=2, epochs=5, target_loss=None, alphas=4)
    a, b = (study.run(config, StudyContext()).datasets[0] for _ in range(2))
    assert a.thetas.tobytes() == b.thetas.tobytes()
    assert a.epsilon_sharpness.tobytes() == b.epsilon_sharpness.tobytes()
    assert not np.array_equal(a.thetas[0, 0], a.thetas[0, 1])  # seed 0 and seed 1 differ


def test_settings_are_validated() -> None:
    study = STUDIES["batch-size"]
    with pytest.raises(UserError, match="at least two batch sizes"):
        study.config("quick", batch_sizes=(16,))
    with pytest.raises(UserError, match="must increase"):
        study.config("quick", batch_sizes=(64, 16))
    with pytest.raises(UserError, match="'lr_scaling' parameter"):
        study.config("quick", lr_scaling="cubic")
    with pytest.raises(UserError, match="3k \\+ 1"):
        study.config("quick", alphas=8)
    with pytest.raises(UserError, match="'\\{in\\}'"):
        study.config("quick", model="mlp:64-10")
    result = CliRunner().invoke(app, ["study", "batch-size", "--set", "eps=0"])
    assert result.exit_code == 2 and "eps" in result.stderr


TINY = ["train_size=200", "batch_sizes=10,100", "seeds=2", "epochs=20", "alphas=4", "ascent_steps=4"]


def _command(out: Path) -> list[str]:
    tiny = [arg for item in TINY for arg in ("--set", item)]
    return [sys.executable, "-m", "losslab.cli", "study", "batch-size", "--quick", *tiny, "--out", str(out), "--json"]


def test_a_killed_study_resumes_bit_identically(tmp_path: Path) -> None:
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    kill_mid_sweep_then_resume(_command, killed, clean, "batch-size", at_least=2, below=4)
    a, b = load(killed), load(clean)
    assert a.manifest["resumed"] and a.status == "complete"
    da, db = a.result.datasets[0], b.result.datasets[0]
    for field in ("thetas", "train_loss", "test_error", "lambda_max", "epsilon_sharpness", "adaptive_sharpness"):
        assert getattr(da, field).tobytes() == getattr(db, field).tobytes(), field
    assert da.line.train_loss.tobytes() == db.line.train_loss.tobytes()
    assert (killed / "figures" / "study-batch-size.png").is_file()


def test_cli_lists_both_new_studies() -> None:
    listed = CliRunner().invoke(app, ["study", "list", "--json"])
    assert listed.exit_code == 0
    names = json.loads(listed.stdout)
    assert "batch-size" in names and "depth" in names
