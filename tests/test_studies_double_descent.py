"""The double-descent study: direction of the curves, resume after a kill, the CLI."""

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
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.errors import UserError
from losslab.studies import STUDIES, StudyContext

TINY = ["widths=4,8,16,32,48,64", "epochs=25", "train_size=200", "lr=0.05", "seeds=1"]


def test_wider_networks_fit_noisy_labels_more_easily() -> None:
    study = STUDIES["double-descent"]
    config = study.config("quick", widths=(4, 16, 128), epochs=40, train_size=200, seeds=2)
    result = study.run(config, StudyContext())
    # Direction, not values: capacity fits the 15 %-noisy labels; the narrowest net cannot.
    assert result.train_error[0] > 0.2
    assert result.train_error[-1] < result.train_error[0] / 4
    assert np.all(np.diff(result.train_error) <= 0.02)  # non-increasing up to seed noise
    assert result.params.tolist() == [40 * h + h + h * h + h + 10 * h + 10 for h in (4, 16, 128)]
    assert result.test_error_per_seed.shape == (3, 2)
    if result.interpolation_threshold is not None:
        assert result.train_error[list(result.widths).index(result.interpolation_threshold)] == 0


def test_settings_are_validated() -> None:
    study = STUDIES["double-descent"]
    with pytest.raises(UserError, match="must contain '\\{h\\}'"):
        study.config("quick", model="mlp:40-10-10")
    with pytest.raises(UserError, match="no setting 'depth'"):
        study.config("quick", depth=3)
    result = CliRunner().invoke(app, ["study", "double-descent", "--set", "widths=a,b"])
    assert result.exit_code == 2 and "must be a int" in result.stderr


def _command(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "losslab.cli",
        "study",
        "double-descent",
        "--quick",
        *[arg for item in TINY for arg in ("--set", item)],
        "--out",
        str(out),
        "--json",
    ]


def test_a_killed_study_resumes_bit_identically(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = killed / "chunks" / "double-descent"
    deadline = time.time() + 120
    while len(list(chunks.glob("0*.npz"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
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
    for field in ("train_error", "test_error", "train_loss", "test_loss", "steps_to_target"):
        assert getattr(a.result, field).tobytes() == getattr(b.result, field).tobytes(), field


def test_cli_lists_and_runs(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["study", "list", "--json"])
    assert listed.exit_code == 0 and "double-descent" in json.loads(listed.stdout)
    out = tmp_path / "dd"
    result = runner.invoke(
        app,
        [
            "study",
            "double-descent",
            "--quick",
            "--set",
            "widths=8,32",
            "--set",
            "epochs=5",
            "--set",
            "train_size=200",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert (out / "figures" / "study-double-descent.png").is_file()
    assert load(out).result.widths.tolist() == [8, 32]
