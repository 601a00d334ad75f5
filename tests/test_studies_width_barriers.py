"""The width study (Entezari et al. 2022): barriers between two seeds against width, before and after alignment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.data import as_dataset
from losslab.errors import UserError
from losslab.report import figures_of
from losslab.store import RunDir
from losslab.studies import StudyContext, WidthBarriersConfig, WidthResult, width_barriers, width_study
from losslab.train import TrainConfig


def tiny_data(n: int = 48, d: int = 5, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    return as_dataset((X, (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()), name="tiny")


def saved_and_loaded(tmp_path, result):
    run = RunDir.create(tmp_path / type(result).__name__, command="test", config={})
    run.save_result("r", result)
    run.complete(result.summary())
    return load(run.path)["r"]


def test_width_study_shapes_and_endpoints() -> None:
    data = tiny_data(n=64)
    result = width_study(data, [4, 8], config=TrainConfig(lr=0.2, batch_size=16, steps=30), points=5, dtype="float64")
    assert result.widths.tolist() == [4, 8] and result.models[0] == "mlp:5-4-4-3,act=relu"
    for method in ("none", "weight", "activation"):
        assert result.curves[method]["train_loss"].shape == (2, 5)
        assert result.barrier(method).shape == (2,)
    # Aligning permutes B only: both paths start at A exactly and end at B's loss to round-off.
    none, weight = result.curves["none"]["train_loss"], result.curves["weight"]["train_loss"]
    assert np.array_equal(none[:, 0], weight[:, 0])
    np.testing.assert_allclose(none[:, -1], weight[:, -1], rtol=0, atol=1e-12)
    assert (result.align_seconds["weight"] > 0).all() and "none" not in result.align_seconds


def test_the_result_survives_the_store_and_draws_itself(tmp_path) -> None:
    wide = width_study(tiny_data(), [3], methods=("none", "weight"), config=TrainConfig(steps=5), points=3)
    back = saved_and_loaded(tmp_path, wide)
    assert isinstance(back, WidthResult)
    assert back.summary() == wide.summary()
    figures = figures_of(back)
    assert figures and all(f.static is not None and f.interactive is not None for f in figures)


def test_the_registered_study_and_the_command_give_identical_arrays(tmp_path: Path) -> None:
    settings = ("widths=4,6", "epochs=1", "points=3", "methods=none,weight", "train_size=200")
    args = ["study", "width-barriers", *[a for s in settings for a in ("--set", s)], "--out", str(tmp_path / "w")]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    config = WidthBarriersConfig(widths=(4, 6), epochs=1, points=3, methods=("none", "weight"), train_size=200)
    in_python = width_barriers(config, StudyContext())
    loaded = load(tmp_path / "w").result
    assert isinstance(loaded, WidthResult) and loaded.models == in_python.models == [
        "mlp:64-4-4-10,act=relu",
        "mlp:64-6-6-10,act=relu",
    ]
    for method, curves in in_python.curves.items():
        for curve, values in curves.items():
            np.testing.assert_array_equal(loaded.curves[method][curve], values, err_msg=f"{method} {curve}")
    assert set(loaded.align_seconds) == {"weight"}  # timings differ run to run; the curves may not
    estimate = CliRunner().invoke(app, [*args[:-2], "--estimate", "--json"], catch_exceptions=False)
    work = json.loads(estimate.stdout)["estimate"]["work"]
    assert [w["count"] for w in work if "points on the lines" in w["what"]] == [2 * 3, 2 * 3]


def test_the_config_refuses_an_unknown_method() -> None:
    with pytest.raises(UserError, match="The 'methods' parameter of the width-barriers study must be one of"):
        WidthBarriersConfig(methods=("none", "exact"))


# The README's Python equivalent of ``losslab study NAME`` (kept here verbatim so a test runs it).
README_STUDY = """
from pathlib import Path

from losslab.studies import STUDIES, StudyContext

# `losslab study width-barriers --quick --set widths=8,16 --set epochs=1 --out runs/width` in
# Python: the preset with overrides, then the study's runner; the directory makes it resumable.
study = STUDIES["width-barriers"]
config = study.config("quick", widths=(8, 16), epochs=1)
result = study.run(config, StudyContext(directory=Path("runs/width/chunks")))
print(result.summary()["weight"]["train_loss_barrier"])
"""


def test_the_readme_snippet_runs_as_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(README_STUDY, "README_STUDY", "exec"), {"__name__": "readme"})
    assert len(capsys.readouterr().out.split(",")) == 2
    assert sorted(p.name for p in (tmp_path / "runs/width/chunks/width").glob("*.npz")) == ["000000.npz", "000001.npz"]
