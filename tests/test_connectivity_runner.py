"""`ConnectConfig` → `connectivity.run` → `ConnectResult`: the command and Python give the same arrays."""

from __future__ import annotations

import doctest
import importlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from losslab import connectivity, load
from losslab.cli import app
from losslab.connectivity import CURVE_CONFIG, ConnectConfig
from losslab.data import load_data
from losslab.errors import UserError
from losslab.models import build_model, load_checkpoint, save_checkpoint
from losslab.objective import Objective
from losslab.train import TrainConfig, train

SPEC = "mlp:64-12-10"

# The README's Python equivalent of ``losslab connect`` (kept here verbatim so a test runs it).
README_CONNECT = """
import losslab
from losslab import connectivity

# `losslab connect A B --model mlp:64-32-10 --align weight --points 11` in Python: the same
# config, the same runner, the same arrays. (Checkpoints: losslab.load_checkpoint(model, path).)
data = losslab.load_data("digits")
objective = losslab.Objective(losslab.build_model("mlp:64-32-10", seed=0), "cross_entropy", data)
a = losslab.train(objective, losslab.TrainConfig(epochs=2)).theta
b_init = objective.as_theta(losslab.build_model("mlp:64-32-10", seed=1))
b = losslab.train(objective, losslab.TrainConfig(epochs=2, seed=1), theta=b_init).theta
config = connectivity.ConnectConfig(align="weight", points=11)
result = connectivity.run(objective, a, b, config)
barrier = result.summary()["barrier"]  # barrier[path][curve][definition]
print(barrier["naive"]["train_loss"]["linear"], barrier["aligned"]["train_loss"]["linear"])
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pair")
    data = load_data("digits")
    paths = []
    for seed in (0, 1):
        model = build_model(SPEC, seed=seed)
        objective = Objective(model, "cross_entropy", data)
        result = train(objective, TrainConfig(epochs=1, seed=seed), test=False)
        model.load_state_dict(objective.state_dict(result.theta))
        paths.append(save_checkpoint(model, root / f"{seed}.pt"))
    return paths[0], paths[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"points": 1}, "The 'points' parameter of connect must be an int ≥ 2. Got 1."),
        ({"align": "exact"}, "The 'align' parameter of connect must be one of 'none', 'weight', 'activation'"),
        ({"path": "spline"}, "The 'path' parameter of connect must be one of 'line', 'bezier', 'chain'. Got 'spline'."),
    ],
)
def test_the_config_validates_once_with_the_one_template(options: dict, message: str) -> None:
    with pytest.raises(UserError) as info:
        ConnectConfig(**options)
    assert message in str(info.value)


def test_the_command_and_the_runner_give_identical_arrays(pair: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["connect", *pair, "--model", SPEC, "--align", "activation", "--repair", "--points", 5, "--out", out]
    args += ["--path", "chain", "--curve-epochs", 1]
    result = CliRunner().invoke(app, [str(a) for a in (*args, "--json")], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    from_cli = load(out).result

    model_a, model_b = build_model(SPEC), build_model(SPEC)
    load_checkpoint(model_a, str(pair[0]))
    load_checkpoint(model_b, str(pair[1]))
    objective = Objective(model_a, "cross_entropy", load_data("digits"))
    curve = replace(CURVE_CONFIG, epochs=1)
    config = ConnectConfig(align="activation", repair=True, points=5, path="chain", curve=curve)
    in_python = connectivity.run(objective, model_a, model_b, config)
    assert ConnectConfig.from_dict(load(out).manifest["config"]) == config  # the run records what it ran

    assert set(from_cli.paths) == set(in_python.paths) == {"naive", "aligned", "repair", "curve"}
    np.testing.assert_array_equal(from_cli.curve.bend, in_python.curve.bend)
    for key, evaluation in in_python.paths.items():
        assert set(from_cli.paths[key].values) == set(evaluation.values)
        np.testing.assert_array_equal(from_cli.paths[key].t, evaluation.t)
        for curve, values in evaluation.values.items():
            np.testing.assert_array_equal(from_cli.paths[key].values[curve], values, err_msg=f"{key} {curve}")
    np.testing.assert_array_equal(from_cli.alignment.theta, in_python.alignment.theta)
    # The summary is the same object the command printed, key for key.
    printed = json.loads(result.stdout)["result"]
    assert printed["barrier"] == json.loads(json.dumps(in_python.summary()["barrier"]))


def test_the_summary_names_the_barrier_and_its_definition() -> None:
    objective = Objective(build_model("mlp:64-8-10", seed=0), "cross_entropy", load_data("digits"))
    b = build_model("mlp:64-8-10", seed=1)
    result = connectivity.run(objective, objective.model, b, ConnectConfig(align="none", points=3), test=False)
    summary = result.summary()
    assert set(summary["barrier"]) == {"naive"} and "aligned" not in summary["barrier"]
    naive = result.paths["naive"]
    # The numbers under 'barrier' are the barriers of the path, not raw curve values.
    assert summary["barrier"]["naive"]["train_loss"]["linear"] == naive.barrier("train_loss", "linear").height
    assert summary["barrier"]["naive"]["train_error"]["mean"] == naive.barrier("train_error", "mean").height
    assert summary["endpoints"]["a"]["train_loss"] == float(naive.values["train_loss"][0])
    assert set(summary["units"]) == {"train_loss", "train_error"}  # no test curves were asked for
    assert "Entezari" in summary["definitions"]["linear"]


@pytest.mark.parametrize("module", ["losslab.connectivity", "losslab.connectivity.connect"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_the_readme_snippet_runs_as_is(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(README_CONNECT, "README_CONNECT", "exec"), {"__name__": "readme"})
    naive, aligned = (float(v) for v in capsys.readouterr().out.split())
    assert naive >= 0 and aligned >= 0
