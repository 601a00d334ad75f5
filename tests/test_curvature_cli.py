"""``losslab hessian`` and ``losslab train --track-sharpness`` through Typer's runner."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.curvature import (
    Eigenpairs,
    LayerCurvature,
    SaddleIndex,
    Sharpness,
    SharpnessTrack,
    SpectralDensity,
    TraceEstimate,
)

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
MODEL = "mlp:64-12-10"  # 910 parameters: every analysis in a few seconds


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A train run of the small MLP with the edge-of-stability record (full-batch GD)."""
    out = tmp_path_factory.mktemp("curv") / "train"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result = invoke(
        "train",
        "--model",
        MODEL,
        "--optimizer",
        "gd",
        "--batch-size",
        "0",
        "--lr",
        "0.5",
        "--steps",
        "30",
        "--record-every",
        "5",
        "--track-sharpness",
        "10",
        "--out",
        out,
        "--json",
    )
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.stderr
    return out


def test_train_saves_the_sharpness_track(trained):
    run = load(trained)
    track = run["sharpness"]
    assert isinstance(track, SharpnessTrack)
    assert track.steps.tolist() == [0, 10, 20, 30] and track.converged.all()  # step 0 is tracked too
    np.testing.assert_allclose(track.two_over_lr, 4.0)
    assert run.manifest["config"]["track_sharpness"] == 10
    assert run.manifest["result"]["sharpness"]["points"] == 4
    edge = track.lambda_max / track.two_over_lr
    assert run.manifest["result"]["sharpness"]["final_ratio"] == edge[-1]  # λmax·η/2 in --json and run.json
    assert (
        "tail_ratio" in run.manifest["result"]["sharpness"]
        and "first_crossing_step" in run.manifest["result"]["sharpness"]
    )
    assert (trained / "figures" / "sharpness-edge-of-stability.png").is_file()


def test_hessian_everything(trained, tmp_path):
    out = tmp_path / "hessian"
    result = invoke(
        "hessian",
        "--checkpoint",
        trained,
        "--top",
        "3",
        "--bottom",
        "2",
        "--trace",
        "--density",
        "--saddle",
        "--sharpness",
        "--per-layer",
        "--trace-method",
        "xtrace",
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    summary = payload["result"]
    assert summary["operator"] == "hessian" and summary["dim"] == 910
    assert summary["top"]["converged"] == 3 and summary["saddle"]["verdict"] in (
        "saddle",
        "minimum",
        "undecided",
    )
    run = load(out)
    expected = {
        "top": Eigenpairs,
        "bottom": Eigenpairs,
        "trace": TraceEstimate,
        "density": SpectralDensity,
        "saddle": SaddleIndex,
        "sharpness": Sharpness,
        "layers": LayerCurvature,
    }
    assert {name: type(r) for name, r in run.results.items()} == expected
    assert len(run["bottom"].eigenvalues) == 5  # --saddle asks for at least 5 bottom pairs
    assert run["sharpness"].lambda_max == run["top"].eigenvalues[0]
    assert run["trace"].method == "xtrace"
    # The density and the trace estimate the same number; they agree within their errors.
    gap = abs(run["density"].trace - run["trace"].estimate)
    assert gap <= 4.5 * float(np.hypot(run["density"].trace_stderr, run["trace"].stderr))
    for slug in (
        "top-eigenvalues",  # file names name each part once (issue 16)
        "bottom-eigenvalues",
        "trace-xtrace",
        "density",
        "saddle",
        "sharpness",
        "layers",
    ):
        assert (out / "figures" / f"{slug}.png").is_file(), slug
    assert "Saddle index" in (out / "report.html").read_text()


def test_hessian_ggn_in_float64(trained, tmp_path):
    out = tmp_path / "ggn"
    result = invoke(
        "hessian",
        "--checkpoint",
        trained,
        "--ggn",
        "--dtype",
        "float64",
        "--top",
        "2",
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    top = load(out)["top"]
    assert top.operator == "ggn" and top.vectors.dtype == np.float64 and top.converged.all()


def test_resume_after_a_crash_gives_the_same_numbers(trained, tmp_path, monkeypatch):
    import importlib

    cli = importlib.import_module("losslab.curvature.run")  # the runner the command calls

    args = [
        "hessian",
        "--checkpoint",
        trained,
        "--top",
        "2",
        "--bottom",
        "1",
        "--density",
        "--json",
    ]
    fresh = invoke(*args, "--out", tmp_path / "fresh")
    assert fresh.exit_code == 0, fresh.stderr

    def crash(*_a, **_k):
        raise RuntimeError("killed")

    out = tmp_path / "crashed"
    monkeypatch.setattr(cli, "slq", crash)
    failed = invoke(*args, "--out", out)
    assert failed.exit_code == 1 and "killed" in failed.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    monkeypatch.undo()
    monkeypatch.setattr(cli, "extreme_eigenpairs", crash)  # the finished piece must be loaded, not redone
    resumed = invoke(*args, "--out", out)
    assert resumed.exit_code == 0, resumed.stderr
    a, b = load(tmp_path / "fresh"), load(out)
    assert b.manifest["resumed"]
    np.testing.assert_array_equal(a["top"].eigenvalues, b["top"].eigenvalues)
    np.testing.assert_array_equal(a["top"].vectors, b["top"].vectors)
    np.testing.assert_array_equal(a["density"].nodes, b["density"].nodes)


def _user_model(tmp_path: Path, body: str) -> str:
    path = tmp_path / "user_model.py"
    path.write_text(textwrap.dedent(body))
    return f"{path}:build"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top", "100000"], "at most 910"),
        (["--top", "3", "--bottom", "908"], "at most 910"),
        (["--tol", "0"], "'tol' parameter"),
        (["--tol", "-1e-3"], "'tol' parameter"),
        (["--top", "0"], "Nothing to compute"),
        (["--trace-method", "exact"], "'trace_method' parameter"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(trained, tmp_path, args, message):
    result = invoke("hessian", "--checkpoint", trained, *args, "--out", tmp_path / "bad")
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_dropout_in_train_mode_is_refused(tmp_path):
    spec = _user_model(
        tmp_path,
        """
        import torch.nn.functional as F
        from torch import nn

        class Noisy(nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = nn.Linear(64, 10)

            def forward(self, x):
                return F.dropout(self.layer(x.flatten(1)), 0.5, training=True)

        def build():
            return Noisy()
    """,
    )
    result = invoke("hessian", "--model", spec, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "different outputs" in result.stderr


def test_a_loss_that_is_not_twice_differentiable_is_refused(tmp_path):
    """|s|^1.5 at s = 0: finite gradient, infinite second derivative."""
    spec = _user_model(
        tmp_path,
        """
        import torch
        from torch import nn

        class Kink(nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = nn.Linear(64, 10)
                self.s = nn.Parameter(torch.zeros(()))

            def forward(self, x):
                return self.layer(x.flatten(1)) + self.s.abs() ** 1.5

        def build():
            return Kink()
    """,
    )
    result = invoke("hessian", "--model", spec, "--top", "1", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "not finite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_track_sharpness_needs_one_seed(tmp_path):
    result = invoke(
        "train",
        "--model",
        MODEL,
        "--seeds",
        "2",
        "--steps",
        "2",
        "--track-sharpness",
        "1",
        "--out",
        tmp_path / "t",
    )
    assert result.exit_code == 2 and "one run" in result.stderr
    zero = invoke("train", "--model", MODEL, "--steps", "2", "--track-sharpness", "0", "--out", tmp_path / "z")
    assert zero.exit_code == 2 and "'track_sharpness' parameter" in zero.stderr


def test_runs_load_in_a_fresh_process(trained, tmp_path):
    """`losslab.load` alone (no CLI, no report imported) gives the curvature results back."""
    import subprocess
    import sys

    out = tmp_path / "h"
    assert invoke("hessian", "--checkpoint", trained, "--top", "1", "--out", out, "--json").exit_code == 0
    code = "import sys, losslab; print(sorted(losslab.load(sys.argv[1]).results))"
    for path, expected in ((trained, "['sharpness', 'train']"), (out, "['top']")):
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected


def test_demo_step(trained):
    from losslab.cli.hessian import _demo_hessian

    out = trained.parent / "hessian"
    _demo_hessian(out, False, "cpu")
    run = load(out)
    assert set(run.results) == {"top", "bottom", "trace", "density", "saddle"}
    assert run["top"].converged.all()
