"""`surface.run` with its configs: the same arrays as the command line, one validation, the grid budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from losslab import Objective, UserError, build_model, load, load_data
from losslab.cli import app
from losslab.cli.common import Setup
from losslab.objective.cost import Budget
from losslab.parallel import LocalExecutor
from losslab.surface import InterpolateConfig, Interpolation, Line, Surface, SurfaceConfig, estimate, run

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
MODEL = "mlp:64-16-10"
GRID_FIELDS = ("loss", "accuracy", "test_loss", "test_accuracy")


def invoke(*args: object):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def train_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("surface-run") / "train"
    result = invoke("train", "--model", MODEL, "--epochs", "3", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    return out


def _same(a: object, b: object, fields: tuple[str, ...]) -> None:
    for name in fields:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)


def test_plane_from_the_runner_equals_the_command(train_run: Path, tmp_path: Path) -> None:
    args = ["--steps", 5, "--y-steps", 4, "--range", -0.5, 0.5, "--split", "test", "--rows-per-chunk", 2]
    result = invoke("surface", "--checkpoint", train_run, *args, "--out", tmp_path / "cli", "--json")
    assert result.exit_code == 0, result.stderr
    cli = load(tmp_path / "cli").result
    config = SurfaceConfig(steps=5, y_steps=4, range=(-0.5, 0.5), split="test", rows_per_chunk=2)
    python = run(Setup(checkpoint=str(train_run)), config)  # no store: pieces kept in memory
    assert isinstance(python, Surface)
    _same(cli, python, ("a", "b", "theta", *GRID_FIELDS))
    np.testing.assert_array_equal(cli.directions.d1, python.directions.d1)
    np.testing.assert_array_equal(cli.trajectory.coords, python.trajectory.coords)
    # the run directory records the config; it reads back into the same config
    recorded = load(tmp_path / "cli").manifest["config"]
    assert SurfaceConfig.from_dict(recorded) == config
    assert recorded["scale"] == "auto" and "scale" not in config.to_dict()  # a drawing choice, not the analysis's


def test_an_objective_and_an_executor_give_the_same_grid(tmp_path: Path) -> None:
    """`losslab surface --model M` is `run(Objective(build_model(M, seed=0), ...), config)`."""
    result = invoke("surface", "--model", MODEL, "--steps", 4, "--dirs", "random", "--out", tmp_path / "cli", "--json")
    assert result.exit_code == 0, result.stderr
    objective = Objective(build_model(MODEL, seed=0), "cross_entropy", load_data("digits"))
    config = SurfaceConfig(steps=4, dirs="random")
    stored = run(objective, config, store=tmp_path / "chunks", executor=LocalExecutor())
    _same(load(tmp_path / "cli").result, stored, GRID_FIELDS)
    again = run(objective, config, store=tmp_path / "chunks")  # every piece loaded from the store
    assert again.points_evaluated == 0
    _same(stored, again, GRID_FIELDS)


def test_line_and_interpolation_equal_the_command(train_run: Path, tmp_path: Path) -> None:
    assert invoke("surface", "--checkpoint", train_run, "--line", "--steps", 7, "--out", tmp_path / "l").exit_code == 0
    line = run(Setup(checkpoint=str(train_run)), SurfaceConfig(line=True, steps=7))
    assert isinstance(line, Line)
    _same(load(tmp_path / "l").result, line, ("alphas", *GRID_FIELDS))
    args = ["--from", "init", "--to", train_run, "--steps", 9, "--split", "test", "--out", tmp_path / "i"]
    assert invoke("interpolate", *args).exit_code == 0
    config = InterpolateConfig(start="init", end=str(train_run), steps=9, split="test")
    curve = run(Setup(checkpoint=str(train_run)), config)
    assert isinstance(curve, Interpolation)
    cli = load(tmp_path / "i").result
    _same(cli, curve, ("alphas", *GRID_FIELDS))
    assert cli.labels == curve.labels == ["init", str(train_run)]
    assert cli.monotone == curve.monotone and cli.bump == curve.bump


def test_interpolation_from_an_objective_needs_a_point_not_init(train_run: Path) -> None:
    objective = Objective(build_model(MODEL, seed=0), "cross_entropy", load_data("digits"))
    with pytest.raises(UserError, match="seeded initialization"):
        run(objective, InterpolateConfig(start="init"))
    curve = run(objective, InterpolateConfig(start=str(train_run / "init.pt"), steps=3))
    # the seeded init is the train run's init.pt: the curve starts and ends at the same loss
    assert curve.loss[0] == pytest.approx(curve.loss[-1], rel=1e-6) and curve.distance == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 1}, "The 'steps' parameter of surface must be an int ≥ 2. Got 1."),
        ({"y_steps": 0}, "The 'y_steps' parameter of surface must be an int ≥ 2. Got 0."),
        ({"range": (1.0, -1.0)}, "The 'range' parameter of surface must have min < max"),
        ({"range": 3.0}, "The 'range' parameter of surface must be a pair"),
        ({"dirs": "sideways"}, "The 'dirs' parameter of surface must be one of"),
        ({"split": "validation"}, "The 'split' parameter of surface must be one of"),
        ({"rows_per_chunk": 0}, "The 'rows_per_chunk' parameter of surface must be an int ≥ 1. Got 0."),
        ({"dirs": "pca"}, "needs a trajectory"),
        ({"budget": 5}, "The 'budget' parameter of surface must be a Budget or None"),
    ],
)
def test_surface_config_validates_once_with_the_template(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError) as caught:
        SurfaceConfig(**kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_interpolate_config_validates() -> None:
    with pytest.raises(UserError, match="The 'steps' parameter of interpolate must be an int ≥ 2. Got 1."):
        InterpolateConfig(steps=1)
    with pytest.raises(UserError, match="The 'range' parameter of interpolate must have min < max"):
        InterpolateConfig(range=(1.0, 0.0))
    config = InterpolateConfig(range=[-0.5, 1.5])
    assert (
        config.range == (-0.5, 1.5) and InterpolateConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    )


# ---------------------------------------------------------------------- the grid budget
def test_an_impossible_grid_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "huge"
    result = runner.invoke(app, ["surface", "--model", MODEL, "--steps", "100000", "--out", str(out)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    # 10¹⁰ points × (loss, accuracy) × 4 bytes, held twice: 149 GiB against the 8 GiB budget
    assert line.startswith("losslab: error: The surface grid of 100,000×100,000 points would hold 149 GiB")
    assert "budget of 8 GiB" in line and "--no-budget" in line
    assert not out.exists()


def test_the_estimate_states_the_memory_the_budget_checks(tmp_path: Path) -> None:
    est = json.loads(invoke("surface", "--model", MODEL, "--steps", 100000, "--estimate", "--json").stdout)["estimate"]
    assert est["memory_bytes"] == 2 * 100000**2 * 2 * 4
    assert est["bound_seconds"] > 0  # an estimate is never refused: it is how one sees the cost
    # the memory figure is the size of the arrays a real grid returns, twice (pieces and grid)
    objective = Objective(build_model(MODEL, seed=0), "cross_entropy", load_data("digits"))
    config = SurfaceConfig(steps=6, y_steps=5, split="test")
    grid = run(objective, config)
    held = sum(getattr(grid, name).nbytes for name in GRID_FIELDS)
    assert estimate(objective, config).memory_bytes == 2 * held


def test_the_budget_refuses_by_time_and_budget_none_overrides() -> None:
    objective = Objective(build_model(MODEL, seed=0), "cross_entropy", load_data("digits"))
    with pytest.raises(UserError, match=r"predicted to take .* more than the budget of 1e-09 h"):
        run(objective, SurfaceConfig(steps=3, budget=Budget(hours=1e-9)))
    with pytest.raises(UserError, match="would hold .* GiB of results, more than the budget of 1e-09 GiB"):
        run(objective, SurfaceConfig(steps=3, line=True, budget=Budget(memory_gib=1e-9)))
    assert run(objective, SurfaceConfig(steps=3, budget=None)).loss.shape == (3, 3)


def test_no_budget_lets_the_command_run_a_grid_over_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default budget shrunk below a small grid, --no-budget is what lets it run."""
    import losslab.cli.surface as cli

    monkeypatch.setattr(cli, "Budget", lambda: Budget(memory_gib=1e-9))
    refused = runner.invoke(app, ["surface", "--model", MODEL, "--steps", "3", "--out", str(tmp_path / "r")])
    assert refused.exit_code == 2 and "budget" in refused.stderr and not (tmp_path / "r").exists()
    ran = invoke("surface", "--model", MODEL, "--steps", 3, "--no-budget", "--out", tmp_path / "n", "--json")
    assert ran.exit_code == 0, ran.stderr
    assert load(tmp_path / "n").manifest["config"]["budget"] is None


def test_scale_is_the_report_s_choice(train_run: Path, tmp_path: Path) -> None:
    from losslab.report import figures_of
    from losslab.report.surface import loss_scale

    line = run(Setup(checkpoint=str(train_run)), SurfaceConfig(line=True, steps=5))
    assert not hasattr(line, "scale")
    with loss_scale("log"):
        (log,) = figures_of(line)
    with loss_scale("linear"):
        (linear,) = figures_of(line)
    assert log.static.axes[0].get_yscale() == "log" and linear.static.axes[0].get_yscale() == "linear"
    with pytest.raises(UserError, match="The 'scale' parameter of surface must be one of"):
        with loss_scale("cubic"):
            pass
    bad = runner.invoke(app, ["surface", "--model", MODEL, "--scale", "cubic", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "'scale' parameter of surface" in bad.stderr


def test_docstring_example() -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module("losslab.surface.run"))
    assert result.attempted > 0 and result.failed == 0
