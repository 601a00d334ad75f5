"""``losslab ntk`` and ``losslab spectra``: exit codes, --json, the same arrays as the Python runners."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.cli.common import Setup
from losslab.ntk.run import NTKConfig
from losslab.ntk.run import run as run_ntk
from losslab.spectra.run import SpectraConfig, layer_spectra

RUNNER = CliRunner()


def test_ntk_command_matches_python_and_checks(tmp_path: Path) -> None:
    out = tmp_path / "ntk"
    args = ["ntk", "--model", "mlp:64-16-10", "--rows", "24", "--method", "ntvp", "--out", str(out), "--json"]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    summary = payload["result"]
    assert summary["n"] == 24 and summary["outputs"] == 10 and summary["method"] == "ntvp"
    assert summary["asymmetry"] < 1e-6 and summary["min_eigenvalue_relative"] > -1e-6
    stored = load(out).results["ntk"]
    python = run_ntk(Setup("mlp:64-16-10"), NTKConfig(rows=24, method="ntvp"))
    np.testing.assert_array_equal(stored.kernel, python.kernel)
    assert (out / "report.html").is_file() and any((out / "figures").glob("ntk*.png"))


def test_ntk_user_errors_exit_2_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bad"
    result = RUNNER.invoke(app, ["ntk", "--model", "mlp:64-16-10", "--method", "fast", "--out", str(out)])
    assert result.exit_code == 2 and "'method' parameter of ntk" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()
    result = RUNNER.invoke(app, ["spectra", "--model", "mlp:64-16-10", "--conv", "rows", "--out", str(out)])
    assert result.exit_code == 2 and "'conv' parameter of spectra" in result.output and not out.exists()


def test_spectra_command_matches_python(tmp_path: Path) -> None:
    out = tmp_path / "spectra"
    args = ["spectra", "--model", "mlp:64-100-50-10", "--bootstrap", "20", "--gof", "10", "--min-size", "11"]
    args += ["--out", str(out), "--json"]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])["result"]
    assert set(summary["layers"]) == {"1.weight", "3.weight"}  # the 10-row output layer is below min_size
    assert summary["credible_layers"] == 0  # an initialization is a random matrix: no credible power law
    stored = load(out).results["spectra"]
    python = layer_spectra(Setup("mlp:64-100-50-10").build_model(), SpectraConfig(bootstrap=20, gof=10, min_size=11))
    np.testing.assert_array_equal(stored.alpha, python.alpha)
    for a, b in zip(stored.layers, python.layers, strict=True):
        np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
        assert (a.fit.alpha_low, a.fit.p_value) == (b.fit.alpha_low, b.fit.p_value)
    estimate = RUNNER.invoke(app, ["spectra", "--model", "mlp:64-100-50-10", "--estimate", "--json"])
    assert estimate.exit_code == 0 and "estimate" in json.loads(estimate.stdout)
