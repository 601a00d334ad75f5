"""``losslab.load(run).config`` rebuilds the config dataclass a command ran with, equal to the one
built in Python, and handing it back to the runner reproduces the run's arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import losslab
from losslab import curvature
from losslab._config import config_record, rebuild_config
from losslab.cli import app
from losslab.errors import UserError
from losslab.exact import PerceptronConfig, ScalingConfig
from losslab.ntk import NTKConfig
from losslab.spectra import SpectraConfig
from losslab.studies import InstabilityConfig
from losslab.surface import SurfaceConfig
from losslab.train import TrainConfig, TrainRun

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


def invoke(*args: object) -> None:
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("config") / "train"
    invoke(
        "train", "--data", "xor", "--model", "mlp:2-8-2,act=tanh", "--lr", "0.5", "--steps", 20, "--out", out, "--json"
    )
    return out


def test_train_and_hessian_configs_come_back_equal(trained: Path, tmp_path: Path) -> None:
    config = losslab.load(trained).config
    assert config == TrainRun(TrainConfig(lr=0.5, steps=20))
    out = tmp_path / "hessian"
    invoke("hessian", "--checkpoint", trained, "--top", 2, "--bottom", 1, "--trace", "--out", out, "--json")
    run = losslab.load(out)
    assert run.config == curvature.HessianConfig(top=2, bottom=1, trace=True)
    # The rebuilt config, given back to the runner, computes the run's arrays again.
    model = losslab.load_checkpoint(losslab.build_model("mlp:2-8-2,act=tanh"), trained / "model.pt")
    objective = losslab.Objective(model, "cross_entropy", losslab.load_data("xor"))
    again = curvature.run(objective, run.config)
    for name in ("top", "bottom"):
        np.testing.assert_array_equal(getattr(again, name).eigenvalues, run[name].eigenvalues, err_msg=name)
    assert again.trace.estimate == run["trace"].estimate


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("surface", "--dirs", "random", "--steps", 5, "--line"),
            SurfaceConfig(dirs="random", steps=5, line=True),
        ),
        (("ntk", "--rows", 8, "--top", 3), NTKConfig(rows=8, top=3)),
    ],
    ids=["surface", "ntk"],
)
def test_each_command_records_its_config(trained: Path, tmp_path: Path, args: tuple, expected: object) -> None:
    invoke(*args, "--checkpoint", trained, "--out", tmp_path / "run", "--json")
    assert losslab.load(tmp_path / "run").config == expected


def test_spectra_records_its_config(tmp_path: Path) -> None:
    invoke("spectra", "--model", "mlp:64-32-10", "--bootstrap", 0, "--gof", 0, "--out", tmp_path / "run", "--json")
    assert losslab.load(tmp_path / "run").config == SpectraConfig(bootstrap=0, gof=0)


def test_exact_and_study_configs_keep_their_tuples(tmp_path: Path) -> None:
    invoke("exact", "perceptron", "--data", "xor", "--fewest-errors", "--out", tmp_path / "p", "--json")
    assert losslab.load(tmp_path / "p").config == PerceptronConfig(fewest_errors=True)
    invoke("exact", "scaling", "--budget", "0.5", "--seeds", 1, "--out", tmp_path / "s", "--json")
    config = losslab.load(tmp_path / "s").config
    assert isinstance(config, ScalingConfig) and isinstance(config.ratios, tuple)
    settings = ("--model", "mlp:2-4-2", "--data", "xor", "--steps", 4, "--ks", "0,2", "--points", 3)
    invoke("instability", *settings, "--out", tmp_path / "i", "--json")
    config = losslab.load(tmp_path / "i").config
    assert config == InstabilityConfig(model="mlp:2-4-2", data="xor", steps=4, ks=(0, 2), points=3)


def test_nested_and_optional_tuples_round_trip() -> None:
    config = TrainRun(TrainConfig(betas=(0.5, 0.6), steps=3), track_sharpness=1)
    assert rebuild_config(json.loads(json.dumps(config_record(config)))) == config
    study = InstabilityConfig(ks=None)
    assert rebuild_config(json.loads(json.dumps(config_record(study)))) == study


def test_a_run_without_a_config_says_where_its_settings_are(trained: Path, tmp_path: Path) -> None:
    manifest = json.loads((trained / "run.json").read_text())
    manifest["analysis"] = None
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text(json.dumps({**manifest, "results": {}}))
    with pytest.raises(UserError, match=r"records no analysis config .*manifest\['config'\]"):
        _ = losslab.load(old).config
    manifest["analysis"] = {"type": "os:system", "values": {}}
    (old / "run.json").write_text(json.dumps({**manifest, "results": {}}))
    with pytest.raises(UserError, match="cannot be rebuilt"):
        _ = losslab.load(old).config
