"""The ParaView export of a plane reads back as the same grid and the same named arrays."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch

from losslab.objective import Objective
from losslab.report.surface import write_vts
from losslab.surface import axis, plane, random_directions


def test_vts_reads_back_as_the_surface(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(20, 3, generator=g), torch.randint(3, (20,), generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    obj = Objective(model, "cross_entropy", (X, y), dtype="float64")
    dirs = random_directions(obj.layout, obj.theta0, "filter", seed=0)
    surface = plane(obj, obj.theta0, dirs, axis(-1.0, 1.0, 5), axis(-0.5, 0.5, 3))
    root = ET.parse(write_vts(surface, tmp_path / "plane.vts")).getroot()
    grid = root.find("StructuredGrid")
    assert grid.get("WholeExtent") == "0 4 0 2 0 0"
    points = np.array(grid.find("Piece/Points/DataArray").text.split(), float).reshape(-1, 3)
    arrays = {a.get("Name"): np.array(a.text.split(), float) for a in grid.find("Piece/PointData")}
    # VTK order: a fastest. Point (i, j) is row j * 5 + i, at (a[i], b[j]) with value loss[i, j].
    i, j = 3, 2
    np.testing.assert_array_equal(points[j * 5 + i], [surface.a[i], surface.b[j], surface.loss[i, j]])
    np.testing.assert_array_equal(arrays["train_loss"].reshape(3, 5), surface.loss.T)  # exact: repr round-trips
    kinds = {a.get("Name"): bytes(int(c) for c in a.text.split()[:-1]).decode() for a in grid.find("FieldData")}
    assert kinds == {"d1_kind": surface.directions.kind[0], "d2_kind": surface.directions.kind[1]}


def _read_vts(path: Path) -> tuple[str, np.ndarray, dict[str, np.ndarray]]:
    grid = ET.parse(path).getroot().find("StructuredGrid")
    points = np.array(grid.find("Piece/Points/DataArray").text.split(), float).reshape(-1, 3)
    arrays = {a.get("Name"): np.array(a.text.split(), float) for a in grid.find("Piece/PointData")}
    return grid.get("WholeExtent"), points, arrays


def test_the_surface_command_writes_the_vts_beside_its_figures(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from losslab import load
    from losslab.cli import app

    runner = CliRunner()
    train = tmp_path / "train"
    args = ["train", "--model", "mlp:64-4-10", "--epochs", "1", "--out", str(train), "--json"]
    assert runner.invoke(app, args, catch_exceptions=False).exit_code == 0
    out = tmp_path / "surface"
    args = ["surface", "--checkpoint", str(train), "--steps", "4", "--y-steps", "3", "--split", "both"]
    result = runner.invoke(app, [*args, "--out", str(out), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    surface = load(out).result
    extent, points, arrays = _read_vts(out / "figures" / "surface.vts")
    assert extent == "0 3 0 2 0 0"
    np.testing.assert_array_equal(points[:, 2].reshape(3, 4), surface.loss.T)
    np.testing.assert_array_equal(points[:, 0].reshape(3, 4), np.tile(surface.a, (3, 1)))
    assert set(arrays) == {"train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    np.testing.assert_array_equal(arrays["test_loss"].reshape(3, 4), surface.test_loss.T)
    assert (out / "figures").is_dir() and any(p.suffix == ".png" for p in (out / "figures").iterdir())
