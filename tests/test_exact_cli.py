"""``losslab exact …`` through Typer's runner: runs that reload, figures, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import losslab.exact.solver as solver_module
from losslab import load
from losslab.cli import app
from losslab.exact import (
    PerceptronResult,
    Relu2Result,
    ScalingResult,
    SgdGapResult,
    ThreeNodeResult,
)

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _one_line_error(result, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_perceptron_on_xor(tmp_path: Path) -> None:
    out = tmp_path / "p"
    result = invoke("exact", "perceptron", "--data", "xor", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["result"]
    assert summary["separable"] is False and summary["certificate_exact"] is True
    assert summary["fewest_errors"]["errors"] == 1
    loaded = load(out).result
    assert isinstance(loaded, PerceptronResult) and loaded.fewest is not None
    assert (out / "figures" / "perceptron-separation.png").is_file()


def test_three_node_certified_both_ways(tmp_path: Path) -> None:
    out = tmp_path / "t"
    result = invoke(
        "exact",
        "three-node",
        "--elements",
        6,
        "--subsets",
        9,
        "--seed",
        1,
        "--solvable",
        "--fewest-errors",
        "--relax-seeds",
        3,
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["result"]
    assert summary["trainable"] and summary["splitting_exists"] and summary["theorem_holds"]
    assert summary["fewest_errors"] == 0 and summary["relaxation"]["seeds"] == 3
    loaded = load(out).result
    assert isinstance(loaded, ThreeNodeResult) and loaded.relaxation is not None and loaded.fewest is not None
    assert {p.name for p in (out / "figures").iterdir()} == {
        "three-node-instance.png",
        "three-node-relaxation.png",
    }


def test_relu2_with_sgd_gap(tmp_path: Path) -> None:
    out = tmp_path / "r"
    result = invoke(
        "exact",
        "relu2",
        "--data",
        "spirals:n=24",
        "--lam",
        "1e-2",
        "--sgd-seeds",
        3,
        "--steps",
        60,
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["result"]
    assert summary["certified"] and summary["sgd"]["below_bound"] == 0
    loaded = load(out).result
    assert isinstance(loaded, Relu2Result) and isinstance(loaded.sgd, SgdGapResult)
    assert len(loaded.sgd.gaps) == 3
    names = {p.name for p in (out / "figures").iterdir()}
    assert {"relu2-bounds.png", "relu2-boundaries.png", "relu2-sgd-gaps.png"} <= names


def test_scaling_stops_at_its_budget(tmp_path: Path) -> None:
    out = tmp_path / "s"
    result = invoke("exact", "scaling", "--budget", "0.5", "--seeds", 1, "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["result"]
    assert summary["stopped"] == "budget" and summary["instances"] < summary["planned"]
    assert isinstance(load(out).result, ScalingResult)
    assert (out / "figures" / "scaling.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("perceptron", "--data", "digits"), "binary labels 0/1"),
        (("relu2", "--data", "teacher:n=3000,d=5", "--sgd-seeds", 0), "sampled:N"),
        (("relu2", "--data", "digits"), "two classes"),
        (("relu2", "--patterns", "half"), "'all' or 'sampled:N'"),
        (("three-node", "--elements", 4, "--subsets", 9), "distinct 3-element subsets"),
        (("perceptron", "--weight-bound", "big"), "'--weight-bound' option"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: tuple, message: str) -> None:
    result = invoke("exact", *args, "--out", tmp_path / "bad")
    assert message in _one_line_error(result)
    assert not (tmp_path / "bad").exists()  # nothing half-written stays


def test_solver_timeout_is_reported_not_invented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Stopped:
        status, x, fun, message, mip_node_count = 1, None, None, "Time limit reached", 3

    monkeypatch.setattr(solver_module, "milp", lambda *a, **k: Stopped())
    result = invoke(
        "exact",
        "three-node",
        "--elements",
        6,
        "--subsets",
        9,
        "--relax-seeds",
        0,
        "--time-limit",
        2,
        "--out",
        tmp_path / "x",
    )
    line = _one_line_error(result)
    assert "time_limit=2 s" in line and "raise --time-limit" in line


def test_demo_step_certifies(tmp_path: Path) -> None:
    # Its time is the demo's business (benchmarks), never a test's: tests assert no wall-clock times.
    from losslab.cli.common import quiet
    from losslab.cli.exact import _demo_exact

    with quiet():
        _demo_exact(tmp_path / "demo", False, "cpu")
    run = load(tmp_path / "demo")
    assert run.status == "complete" and run.result.certified
