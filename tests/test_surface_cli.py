"""``losslab surface`` and ``losslab interpolate``: runs, reloading, figures, bad input, resume."""

from __future__ import annotations

import json
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
from losslab.models import build_model, save_checkpoint
from losslab.objective import Objective
from losslab.surface import Interpolation, Line, Surface, pca_directions

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def train_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small digits MLP trained for 3 epochs: 4 snapshots, model.pt and init.pt."""
    out = tmp_path_factory.mktemp("surface-cli") / "train"
    result = invoke("train", "--model", "mlp:64-16-10", "--epochs", "3", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    return out


def test_surface_command_writes_a_reloadable_run_with_figures(train_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "surface"
    result = invoke(
        "surface",
        "--checkpoint",
        train_run,
        "--steps",
        5,
        "--y-steps",
        4,
        "--range",
        -0.5,
        0.5,
        "--split",
        "test",
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["status"] == "complete" and payload["result"]["grid"] == "5x4"
    surface = load(out).result
    assert isinstance(surface, Surface)
    assert surface.loss.shape == surface.test_loss.shape == (5, 4)
    assert surface.a[0] == -0.5 and surface.a[-1] == 0.5 and surface.b[0] == -0.5
    # the center is the trained model: its loss sits at a = 0 (b has no 0 with 4 steps)
    trained = load(train_run).result
    assert surface.directions.kind == ["filter", "filter"]
    np.testing.assert_array_equal(surface.theta, trained.theta)
    # a train run as --checkpoint brings its trajectory along, projected on the plane
    assert surface.trajectory is not None and len(surface.trajectory.steps) == len(trained.snapshots)
    assert surface.trajectory.residual[-1] < 1e-5  # the last snapshot is the center itself
    for name in (
        "figures/surface-train-filter.png",
        "figures/surface-test-filter.png",
        "report.html",
    ):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    assert '"type":"surface"' in html and '"type":"scatter3d"' in html
    # the directions are saved: --dirs-from recomputes the same grid exactly
    again = invoke(
        "surface",
        "--dirs-from",
        out,
        "--steps",
        5,
        "--y-steps",
        4,
        "--range",
        -0.5,
        0.5,
        "--split",
        "test",
        "--out",
        tmp_path / "again",
        "--json",
    )
    assert again.exit_code == 0, again.stderr
    assert np.array_equal(load(tmp_path / "again").result.loss, surface.loss)


def test_pca_plane_and_line(train_run: Path, tmp_path: Path) -> None:
    result = invoke(
        "surface",
        "--dirs",
        "pca",
        "--pca-from",
        train_run,
        "--steps",
        4,
        "--out",
        tmp_path / "pca",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    surface = load(tmp_path / "pca").result
    pc1, pc2, fractions = pca_directions(load(train_run).result.snapshots)
    np.testing.assert_allclose(surface.directions.d1, pc1.astype(np.float32), rtol=0, atol=1e-7)
    np.testing.assert_allclose(surface.directions.d2, pc2.astype(np.float32), rtol=0, atol=1e-7)
    assert json.loads(result.stdout)["result"]["explained_variance"] == [round(f, 6) for f in fractions]
    # the default range of a PCA axis covers the whole projected trajectory
    coords = surface.trajectory.coords
    assert surface.a[0] < coords[:, 0].min() and coords[:, 0].max() < surface.a[-1]
    assert surface.b[0] < coords[:, 1].min() and coords[:, 1].max() < surface.b[-1]
    line = invoke(
        "surface",
        "--checkpoint",
        train_run,
        "--line",
        "--steps",
        7,
        "--out",
        tmp_path / "line",
        "--json",
    )
    assert line.exit_code == 0, line.stderr
    result = load(tmp_path / "line").result
    assert isinstance(result, Line) and result.alphas[0] == -1.0 and result.alphas[-1] == 1.0
    assert (tmp_path / "line" / "figures" / "line.png").is_file()


def test_interpolate_from_init_is_the_mli_curve(train_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "mli"
    result = invoke(
        "interpolate",
        "--from",
        "init",
        "--to",
        train_run,
        "--steps",
        11,
        "--split",
        "test",
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    curve = load(out).result
    assert isinstance(curve, Interpolation) and curve.alphas[0] == 0.0 and curve.alphas[-1] == 1.0
    trained = load(train_run).result
    from losslab.data import load_data

    obj = Objective(build_model("mlp:64-16-10"), "cross_entropy", load_data("digits"))
    # float32 losses through two evaluation paths: agreement to a few ulps of ~2.3
    assert curve.loss[0] == pytest.approx(float(obj.loss(torch.as_tensor(trained.theta_init))), rel=1e-6)
    assert curve.loss[-1] == pytest.approx(float(obj.loss(torch.as_tensor(trained.theta))), rel=1e-6)
    assert curve.test_loss is not None and (out / "figures" / "interpolation.png").is_file()
    # from a checkpoint file to a run directory, past both ends
    other = invoke(
        "interpolate",
        "--from",
        train_run / "init.pt",
        "--to",
        train_run,
        "--range",
        -0.5,
        1.5,
        "--steps",
        9,
        "--out",
        tmp_path / "ext",
        "--json",
    )
    assert other.exit_code == 0, other.stderr
    extended = load(tmp_path / "ext").result
    assert extended.loss[2] == curve.loss[0] and extended.loss[6] == curve.loss[-1]  # α = 0 and α = 1


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with only 2 snapshots (init and end): too few for a PCA."""
    out = tmp_path_factory.mktemp("short") / "train"
    result = invoke("train", "--model", "mlp:64-16-10", "--epochs", "1", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    return out


@pytest.mark.parametrize(
    "args,message",
    [
        (["surface", "--steps", "1"], "'steps' parameter of surface must be an int ≥ 2. Got 1."),
        (["surface", "--y-steps", "0"], "'y_steps' parameter of surface must be an int ≥ 2"),
        (["surface", "--range", "1", "-1"], "must have min < max"),
        (
            ["surface", "--y-range", "0.5", "0.5"],
            "'y_range' parameter of surface must have min < max",
        ),
        (["surface", "--dirs", "pca"], "--pca-from"),
        (["surface", "--dirs", "sideways"], "'dirs' parameter of surface must be one of"),
        (["surface", "--split", "validation"], "'split' parameter"),
        (["surface", "--dirs", "pca", "--pca-from", "SHORT"], "at least 3 snapshots"),
        (
            ["surface", "--dirs-from", "SURFACE", "--model", "mlp:64-10", "--checkpoint", "SMALL"],
            "directions of length",
        ),
        (["surface", "--dirs-from", "SURFACE", "--model", "mlp:64-10"], "for another architecture"),
        (["surface", "--pca-from", "SURFACE", "--dirs", "pca"], "needs a train run"),
        (["interpolate", "--to", "TRAIN", "--steps", "1"], "'steps' parameter of interpolate"),
        (["interpolate", "--to", "TRAIN", "--range", "1", "0"], "min < max"),
        (["interpolate", "--to", "TRAIN", "--from", "missing.pt"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, train_run: Path, short_run: Path, tmp_path: Path
) -> None:
    surface_run = tmp_path / "s"
    if "SURFACE" in args:
        assert invoke("surface", "--checkpoint", train_run, "--steps", 3, "--out", surface_run, "--json").exit_code == 0
    save_checkpoint(build_model("mlp:64-10"), tmp_path / "small.pt")
    names = {"SHORT": short_run, "SURFACE": surface_run, "TRAIN": train_run, "SMALL": tmp_path / "small.pt"}
    out = tmp_path / "bad"
    result = runner.invoke(app, [str(names.get(a, a)) for a in args] + ["--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("losslab: error:") and message in lines[0], result.stderr
    assert not out.exists()  # nothing half-written stays


# The killed process saves each piece, then pauses 50 ms, so a kill lands mid-grid on any
# machine; the pause changes when pieces are written, never what they hold.
_SLOW_SAVES = """
import time
from losslab.store import chunks
save = chunks.Chunks.save
chunks.Chunks.save = lambda self, index, arrays: (save(self, index, arrays), time.sleep(0.05))[0]
from losslab.cli import main
main()
"""


def test_resume_after_sigkill_is_bit_identical(tmp_path: Path) -> None:
    """Kill a real process mid-grid (SIGKILL), rerun the command, compare with a whole run."""
    args = [
        "surface",
        "--model",
        "mlp:64-32-10",
        "--steps",
        "41",
        "--split",
        "test",
        "--rows-per-chunk",
        "1",
        "--json",
    ]
    killed = tmp_path / "killed"
    chunk_dir = killed / "chunks" / "plane"
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SAVES, *args, "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and len(list(chunk_dir.glob("*.npz"))) < 3:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, err.decode()
    saved = len(list(chunk_dir.glob("*.npz")))
    assert 3 <= saved < 41, saved  # killed mid-grid: some rows done, most not
    assert json.loads((killed / "run.json").read_text())["status"] == "running"

    resumed = invoke(*args, "--out", killed)  # the same command again
    assert resumed.exit_code == 0, resumed.stderr
    whole = invoke(*args, "--out", tmp_path / "whole")
    assert whole.exit_code == 0, whole.stderr
    a, b = load(killed), load(tmp_path / "whole")
    assert a.manifest["resumed"] is True and b.manifest["resumed"] is False
    assert a.result.points_evaluated == (41 - saved) * 41 and b.result.points_evaluated == 41 * 41
    for field in ("loss", "accuracy", "test_loss", "test_accuracy"):
        assert np.array_equal(getattr(a.result, field), getattr(b.result, field)), field


def test_demo_steps_run_on_the_demo_train_run(tmp_path: Path) -> None:
    from losslab.cli.demo import DEMO_STEPS

    steps = {name: step for name, _, step in DEMO_STEPS}
    assert (
        invoke(
            "train",
            "--model",
            "mlp:64-16-10",
            "--epochs",
            "2",
            "--out",
            tmp_path / "train",
            "--json",
        ).exit_code
        == 0
    )
    steps["surface"](tmp_path / "surface", False, "cpu")
    steps["surface-pca"](tmp_path / "surface-pca", False, "cpu")
    steps["interpolate"](tmp_path / "interpolate", False, "cpu")
    assert isinstance(load(tmp_path / "surface").result, Surface)
    assert load(tmp_path / "surface-pca").result.directions.explained_variance is not None
    assert isinstance(load(tmp_path / "interpolate").result, Interpolation)
