"""The restarts study: failing restarts where bad minima are known, barriers checked by hand, the CLI."""

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
from losslab.models import build_model
from losslab.studies import STUDIES, RestartsResult, StudyContext
from losslab.studies.restarts import PROBLEMS, choose_pairs

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small() -> RestartsResult:
    study = STUDIES["restarts"]
    # 40 % of each problem's budget and 8 seeds (0–7): XOR at 800 GD steps, the teacher at
    # 1,200 Adam steps, digits at 20 epochs of SGD.
    config = study.config("quick", seeds=8, budget=0.4, max_pairs=4, points=5)
    return study.run(config, StudyContext(dtype="float64"))


def test_restarts_fail_on_xor_and_the_teacher_but_not_on_digits(small: RestartsResult) -> None:
    xor, teacher, digits = (small.problem(name) for name in ("xor", "teacher", "digits"))
    assert [len(p.seeds) for p in small.problems] == [8, 8, 8]
    # XOR: some restarts solve it, others stall with two points at p = 1/2, i.e. at loss (ln 2)/2.
    assert 0 < xor.reached.sum() < 8
    stalled = xor.train_loss[~xor.reached]
    assert np.all(np.abs(stalled - math.log(2) / 2) < 0.01), stalled
    assert np.all(xor.train_accuracy[~xor.reached] == 0.5)
    # The student of the teacher's width: not every restart finds a zero-loss solution.
    assert teacher.reached.sum() < 8
    assert teacher.train_loss.max() > 100 * max(teacher.train_loss.min(), 1e-12)
    # The digits MLP: every restart reaches the target; their test accuracies agree within 3 points.
    assert digits.reached.all()
    assert digits.test_accuracy.max() - digits.test_accuracy.min() < 0.03
    assert np.all(np.isnan(xor.test_accuracy)) and np.all(np.isnan(teacher.test_accuracy))
    summary = small.summary()
    assert summary["digits"]["reached_target"] == 8 and summary["xor"]["pairs"] == 4


def test_barriers_match_the_obvious_loop(small: RestartsResult) -> None:
    # Independent reference: load each point of the line into the module and evaluate the loss.
    for name in ("xor", "digits"):
        p = small.problem(name)
        problem = PROBLEMS[name]
        data = load_data(problem.data)
        model = build_model(problem.model).double()
        params = list(model.parameters())
        i, j = p.pairs[0]
        a, b = torch.as_tensor(p.thetas[i]), torch.as_tensor(p.thetas[j])
        X, y = data.X_train.double(), data.y_train
        values = []
        for t in p.t:
            torch.nn.utils.vector_to_parameters((1 - t) * a + t * b, params)
            with torch.no_grad():
                out = model(X)
                if problem.loss == "bce":
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], y.double())
                else:
                    loss = torch.nn.functional.cross_entropy(out, y)
            values.append(float(loss))
        # float64 throughout: the two evaluations differ by summation order only.
        np.testing.assert_allclose(p.curve_naive[0], values, rtol=1e-10, atol=1e-12)
        assert values[0] == pytest.approx(p.train_loss[i], rel=1e-10)
        excess = np.asarray(values) - ((1 - p.t) * values[0] + p.t * values[-1])
        assert p.barrier_naive[0] == pytest.approx(excess.max(), rel=1e-9, abs=1e-12)
        assert p.barrier_aligned[0] >= 0 and np.isfinite(p.curve_aligned[0]).all()
        # Alignment permutes B's hidden units only: the aligned line ends at B's loss.
        assert p.curve_aligned[0][-1] == pytest.approx(values[-1], rel=1e-9)


def test_pairs_are_all_pairs_or_a_seeded_sample() -> None:
    assert choose_pairs(3, 10, 0).tolist() == [[0, 1], [0, 2], [1, 2]]
    sample = choose_pairs(10, 7, 1)
    assert sample.shape == (7, 2) and np.all(sample[:, 0] < sample[:, 1])
    assert len({tuple(p) for p in sample.tolist()}) == 7
    assert sample.tolist() == choose_pairs(10, 7, 1).tolist()
    assert choose_pairs(10, 0, 0).shape == (0, 2)


def test_settings_are_validated() -> None:
    study = STUDIES["restarts"]
    with pytest.raises(UserError, match="no problem 'spirals'"):
        study.config("quick", problems=("xor", "spirals"))
    with pytest.raises(UserError, match="'seeds' parameter of the restarts study must be an int ≥ 2"):
        study.config("quick", seeds=1)
    with pytest.raises(UserError, match="'align' parameter"):
        study.config("quick", align="greedy")
    custom = study.config("quick", model="mlp:64-8-10", steps=40).resolved()
    assert list(custom) == ["custom"] and custom["custom"].model == "mlp:64-8-10"
    assert custom["custom"].data == "digits" and custom["custom"].steps == 40  # an explicit budget is kept
    assert study.config("quick", model="mlp:64-8-10").resolved()["custom"].steps == 575  # half of digits' 1,150
    result = CliRunner().invoke(app, ["study", "restarts", "--set", "budget=0"])
    assert result.exit_code == 2 and "budget" in result.stderr


def test_cli_runs_a_user_problem(tmp_path: Path) -> None:
    out = tmp_path / "restarts"
    result = CliRunner().invoke(
        app,
        [
            "study",
            "restarts",
            "--quick",
            "--model",
            "mlp:2-3-1,act=tanh",
            "--data",
            "xor",
            "--set",
            "loss=bce",
            "--set",
            "optimizer=gd",
            "--set",
            "lr=1.0",
            "--set",
            "steps=300",
            "--set",
            "seeds=4",
            "--set",
            "max_pairs=2",
            "--set",
            "points=3",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["result"]
    assert summary["custom"]["seeds"] == 4 and summary["custom"]["pairs"] == 2
    assert (out / "figures" / "study-restarts-losses.png").is_file()
    assert (out / "figures" / "study-restarts-barriers.png").is_file()
    loaded = load(out).result
    assert loaded.problems[0].problem["model"] == "mlp:2-3-1,act=tanh" and loaded.problems[0].pairs.shape == (2, 2)
