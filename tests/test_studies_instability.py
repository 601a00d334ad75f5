"""Instability analysis (Frankle et al. 2020): the measurement, the registered study and ``losslab instability``."""

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
from losslab.models import build_model
from losslab.objective import Objective
from losslab.report import figures_of
from losslab.store import RunDir
from losslab.studies import (
    STUDIES,
    InstabilityConfig,
    InstabilityResult,
    StudyContext,
    instability,
    measure_instability,
)
from losslab.train import TrainConfig

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def tiny_data(n: int = 48, d: int = 5, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    return as_dataset((X, (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()), name="tiny")


def tiny_objective(spec: str = "mlp:5-8-3") -> Objective:
    return Objective(build_model(spec, seed=0), "cross_entropy", tiny_data(), dtype="float64")


def saved_and_loaded(tmp_path, result):
    run = RunDir.create(tmp_path / type(result).__name__, command="test", config={})
    run.save_result("r", result)
    run.complete(result.summary())
    return load(run.path)["r"]


def test_full_batch_gradient_descent_is_stable_at_every_split() -> None:
    # GD has no SGD noise: both copies follow the same path, so every barrier is round-off.
    objective = tiny_objective()
    result = measure_instability(objective, TrainConfig(optimizer="gd", lr=0.2, steps=8), [0, 3, 6], points=5)
    assert result.ks.tolist() == [0, 3, 6] and result.total_steps == 8
    for curve in result.curves:
        assert result.curves[curve].shape == (3, 5)
        assert np.abs(result.barrier(curve, "linear")).max() <= 1e-12, curve
    assert result.summary()["stable_from_k"] == 0


def test_sgd_copies_differ_and_a_killed_run_resumes_bit_identically(tmp_path) -> None:
    objective = tiny_objective()
    config = TrainConfig(lr=0.2, batch_size=8, steps=24)
    key = {"test": "resume"}
    context = StudyContext(directory=tmp_path / "c")
    first = measure_instability(objective, config, [0, 6, 12], points=5, context=context, key=key)
    assert first.barrier("train_loss", "mean").max() > 0  # different batch orders, different endpoints
    (tmp_path / "c" / "instability" / "000001.npz").unlink()  # as if the run died before the second split finished
    again = measure_instability(objective, config, [0, 6, 12], points=5, context=context, key=key)
    for curve in first.curves:
        assert np.array_equal(first.curves[curve], again.curves[curve])


def test_instability_with_batch_norm_keeps_the_objective_untouched() -> None:
    objective = Objective(
        build_model("deep:1,width=6,in=5,out=3,bn=1", seed=0),
        "cross_entropy",
        tiny_data(),
        dtype="float64",
    )
    before = {k: v.clone() for k, v in objective.buffers.items()}
    result = measure_instability(objective, TrainConfig(lr=0.1, batch_size=16, steps=6), [0, 3], points=3)
    assert result.curves["train_loss"].shape == (2, 3)
    for k, v in objective.buffers.items():
        assert torch.equal(v, before[k]), k


def test_instability_rejects_bad_split_steps_and_seeds() -> None:
    objective = tiny_objective()
    with pytest.raises(UserError, match=r"must lie in \[0, 8\)"):
        measure_instability(objective, TrainConfig(optimizer="gd", steps=8), [0, 8])
    with pytest.raises(UserError, match="two different batch-order seeds"):
        measure_instability(objective, TrainConfig(optimizer="gd", steps=8), [0], seeds=(1, 1))


def test_the_result_survives_the_store_and_draws_itself(tmp_path) -> None:
    # Five split steps: the figure shades one curve per step (a float round-off once broke it).
    config = TrainConfig(lr=0.2, batch_size=16, steps=8)
    unstable = measure_instability(tiny_objective(), config, [0, 1, 2, 4, 6], points=3)
    back = saved_and_loaded(tmp_path, unstable)
    assert isinstance(back, InstabilityResult)
    assert back.summary() == unstable.summary()
    figures = figures_of(back)
    assert figures and all(f.static is not None and f.interactive is not None for f in figures)


def test_instability_command(tmp_path: Path) -> None:
    out = tmp_path / "inst"
    result = invoke(
        "instability",
        "--model",
        "mlp:64-8-10",
        "--epochs",
        "1",
        "--ks",
        "0,4",
        "--points",
        "3",
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["result"]
    assert summary["ks"] == [0, 4] and len(summary["test_error_barrier"]) == 2
    assert sorted(p.name for p in (out / "chunks" / "instability").glob("*.npz")) == [
        "000000.npz",
        "000001.npz",
    ]
    bad = invoke("instability", "--ks", "0,x", "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "comma-separated integers" in bad.stderr


# The README's Python equivalent of ``losslab instability`` (kept here verbatim so a test runs it).
README_INSTABILITY = """
from losslab.studies import STUDIES, InstabilityConfig, StudyContext, instability

# `losslab instability --model mlp:64-32-10 --epochs 2 --ks 0,8,16 --points 5` in Python
# (`losslab study instability --set ...` runs the same study). StudyContext(directory=...)
# makes each split step a resumable chunk.
config = InstabilityConfig(model="mlp:64-32-10", epochs=2, ks=(0, 8, 16), points=5)
result = instability(config, StudyContext())
print(result.summary()["test_error_barrier"], result.summary()["stable_from_k"])
"""


def test_the_command_the_study_and_the_runner_give_identical_arrays(tmp_path: Path) -> None:
    args = ("--model", "mlp:64-8-10", "--epochs", 1, "--ks", "0,4", "--points", 3, "--seed", 1)
    assert invoke("instability", *args, "--out", tmp_path / "cmd", "--json").exit_code == 0
    settings = ("model=mlp:64-8-10", "epochs=1", "ks=0,4", "points=3", "seed=1")
    study = invoke("study", "instability", *[a for s in settings for a in ("--set", s)], "--out", tmp_path / "study")
    assert study.exit_code == 0, study.stderr
    config = InstabilityConfig(model="mlp:64-8-10", epochs=1, ks=(0, 4), points=3, seed=1)
    in_python = instability(config, StudyContext())
    assert in_python.seeds == [2, 3]  # the copies' batch orders follow the seed
    for run in ("cmd", "study"):
        settings = load(tmp_path / run).manifest["config"]["settings"]
        assert STUDIES["instability"].config_from_dict(settings) == config  # the run records what it ran
        loaded = load(tmp_path / run).result
        assert isinstance(loaded, InstabilityResult) and set(loaded.curves) == set(in_python.curves)
        np.testing.assert_array_equal(loaded.ks, in_python.ks)
        for curve, values in in_python.curves.items():
            np.testing.assert_array_equal(loaded.curves[curve], values, err_msg=f"{run} {curve}")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"points": 1}, "The 'points' parameter of instability must be an int ≥ 2. Got 1."),
        ({"ks": (0, -3)}, "The 'ks' parameter of instability must be an int ≥ 0. Got -3."),
        ({"optimizer": "lbfgs"}, "The 'optimizer' parameter of instability must be one of"),
    ],
)
def test_the_config_validates_once_and_the_command_says_it_in_one_line(
    options: dict, message: str, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        InstabilityConfig(**options)
    flag, value = next(iter(options.items()))
    value = ",".join(map(str, value)) if isinstance(value, tuple) else value
    result = invoke("instability", f"--{flag}", value, "--out", tmp_path / "bad")
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_the_estimate_counts_the_steps_the_study_trains() -> None:
    result = invoke(
        "instability", "--model", "mlp:64-8-10", "--epochs", 1, "--ks", "0,4", "--points", 3, "--estimate", "--json"
    )
    assert result.exit_code == 0, result.stderr
    work = {w["what"]: w for w in json.loads(result.stdout)["estimate"]["work"]}
    steps = {what.split(":")[0]: w["count"] for what, w in work.items() if "optimizer steps" in what}
    total = -(-1438 // 64)  # one epoch of the digits training split in batches of 64
    assert steps == {"parent to step 4": 4, "split at 0": total, "split at 4": total - 4}
    assert work["points on the lines between the copies (train and test)"]["count"] == 2 * 3


def test_the_readme_snippet_runs_as_is(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(README_INSTABILITY, "README_INSTABILITY", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert printed.startswith("[") and len(printed.split("]")[0].split(",")) == 3


def test_the_estimate_refuses_split_steps_the_run_would_refuse() -> None:
    for ks in ("0,23", ""):  # past the 23-step budget of one epoch; none at all
        estimate = invoke("instability", "--model", "mlp:64-8-10", "--epochs", 1, "--ks", ks, "--estimate")
        assert estimate.exit_code == 2 and "must lie in [0, 23)" in estimate.stderr
