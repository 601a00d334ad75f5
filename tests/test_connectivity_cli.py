"""``losslab connect`` through Typer's runner, and the demo step (instability: tests/test_studies_instability.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.connectivity import ConnectResult
from losslab.data import load_data
from losslab.models import build_model, save_checkpoint
from losslab.objective import Objective
from losslab.train import TrainConfig, train

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    data = load_data("digits")
    paths = {}
    for name, spec, seed in (
        ("a", "mlp:64-16-10", 0),
        ("b", "mlp:64-16-10", 1),
        ("wide", "mlp:64-20-10", 2),
    ):
        model = build_model(spec, seed=seed)
        objective = Objective(model, "cross_entropy", data)
        result = train(objective, TrainConfig(epochs=2, seed=seed), test=False)
        model.load_state_dict(objective.state_dict(result.theta))
        paths[name] = save_checkpoint(model, root / f"{name}.pt")
    return paths


def test_connect_writes_barriers_before_and_after_alignment(checkpoints, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(
        "connect",
        checkpoints["a"],
        checkpoints["b"],
        "--model",
        "mlp:64-16-10",
        "--align",
        "weight",
        "--points",
        "5",
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["result"]
    assert {"naive", "aligned"} == set(summary["barrier"]) and {"a", "b"} == set(summary["endpoints"])
    assert "alignment" in summary
    assert set(summary["barrier"]["naive"]["train_loss"]) == {"linear", "mean", "max_endpoint", "t_linear"}
    assert set(summary["definitions"]) == {"linear", "mean", "max_endpoint", "t_linear"}
    assert set(summary["units"]) == {"train_loss", "train_error", "test_loss", "test_error"}
    assert summary["alignment"]["max_output_change"] <= 1e-3
    run = load(out)
    assert isinstance(run.result, ConnectResult) and run.result.paths["aligned"].t.shape == (5,)
    assert (out / "report.html").is_file() and (out / "figures" / "connect-barrier-curves.png").is_file()


def test_connect_with_repair_a_curve_and_a_spec_file(checkpoints, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"hidden": [["1.weight", 0], ["1.bias", 0], ["3.weight", 1]]}))
    result = invoke(
        "connect",
        checkpoints["a"],
        checkpoints["b"],
        "--model",
        "mlp:64-16-10",
        "--align",
        "activation",
        "--repair",
        "--path",
        "bezier",
        "--curve-epochs",
        "1",
        "--spec",
        spec,
        "--points",
        "3",
        "--out",
        tmp_path / "run",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["result"]
    assert {"naive", "aligned", "repair", "curve"} == set(summary["barrier"]) and "curve_fit" in summary


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--points", "1"], "The 'points' parameter of connect must be an int ≥ 2. Got 1."),
        (
            ["--align", "exact"],
            "The 'align' parameter of connect must be one of 'none', 'weight', 'activation'",
        ),
        (["--path", "spline"], "The 'path' parameter of connect must be one of"),
    ],
)
def test_bad_options_are_one_line_errors(checkpoints, tmp_path: Path, extra: list[str], message: str) -> None:
    result = invoke(
        "connect",
        checkpoints["a"],
        checkpoints["b"],
        "--model",
        "mlp:64-16-10",
        *extra,
        "--out",
        tmp_path / "run",
    )
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_checkpoints_of_different_architectures_name_the_first_differing_key(checkpoints, tmp_path: Path) -> None:
    result = invoke(
        "connect",
        checkpoints["a"],
        checkpoints["wide"],
        "--model",
        "mlp:64-16-10",
        "--out",
        tmp_path / "run",
    )
    assert result.exit_code == 2
    assert "first differing key is '1.weight'" in result.stderr
    assert "(shape (16, 64) in CKPT_A, (20, 64) in CKPT_B)" in result.stderr


def test_a_spec_that_misses_a_hidden_layer_is_refused(checkpoints, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"hidden": [["1.weight", 0], ["1.bias", 0]]}))
    result = invoke(
        "connect",
        checkpoints["a"],
        checkpoints["b"],
        "--model",
        "mlp:64-16-10",
        "--spec",
        spec,
        "--out",
        tmp_path / "run",
    )
    assert result.exit_code == 2 and "leaves ('3.weight', 1) out" in result.stderr
    torch.save({"not": "a spec"}, tmp_path / "bad.json")
    result = invoke(
        "connect",
        checkpoints["a"],
        checkpoints["b"],
        "--model",
        "mlp:64-16-10",
        "--spec",
        tmp_path / "bad.json",
        "--out",
        tmp_path / "run",
    )
    assert result.exit_code == 2 and "is not valid JSON" in result.stderr


def test_demo_step_separates_naive_and_aligned_barriers(tmp_path: Path) -> None:
    from losslab.cli.connect import _demo

    _demo(tmp_path / "connect", False, "cpu")
    summary = load(tmp_path / "connect").manifest["result"]
    # Two seeds of the digits MLP: a large naive barrier that weight matching nearly removes.
    barrier = summary["barrier"]
    assert barrier["naive"]["train_loss"]["linear"] > 5 * barrier["aligned"]["train_loss"]["linear"]
