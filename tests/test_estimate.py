"""``--estimate``: the work a command would do, counted exactly as the command then does it.

The counts are the checkable part: each test runs the estimate, then the command itself,
and compares what the estimate promised with what the run reports (exact where the count
is fixed, within the bound where a stopping rule decides). Times are only checked to be
positive and finite: tests never assert wall-clock figures.
"""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import losslab.objective.cost as cost_module
from losslab import load
from losslab.cli import app
from losslab.objective.cost import Estimate, Work

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("ray")]

runner = CliRunner()
MODEL = "mlp:64-12-10"


def invoke(*args: object):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def estimate(*args: object) -> dict:
    """Run ``args --estimate --json``; return the estimate and check its times are sane."""
    out = json.loads(invoke(*args, "--estimate", "--json").stdout)["estimate"]
    for w in out["work"]:
        assert math.isfinite(w["unit_seconds"]) and w["unit_seconds"] > 0, w
        assert w["count"] is None or w["count"] <= w["bound"]
    assert 0 <= out["seconds"] <= out["bound_seconds"] + 1e-12 and out["bound_seconds"] > 0
    return out


def by_what(est: dict, start: str) -> dict:
    (found,) = [w for w in est["work"] if w["what"].startswith(start)]
    return found


def test_doctest() -> None:
    result = doctest.testmod(cost_module)
    assert result.attempted > 0 and result.failed == 0


def test_known_and_bounded_work_add_up_separately() -> None:
    est = Estimate("x", [Work("fixed", 10, 10, 0.5), Work("stops early", None, 100, 0.1)])
    assert est.seconds == 5.0 and est.bound_seconds == 15.0
    assert est.to_dict()["work"][1]["count"] is None


def test_train_estimate_counts_the_steps_and_records_of_the_run(tmp_path: Path) -> None:
    args = ("train", "--model", MODEL, "--epochs", 3, "--batch-size", 100)
    est = estimate(*args, "--out", tmp_path / "never")
    assert not (tmp_path / "never").exists()  # an estimate writes nothing
    invoke(*args, "--out", tmp_path / "run", "--json")
    result = load(tmp_path / "run").result
    steps = by_what(est, "optimizer steps")
    records = by_what(est, "full-data records")
    assert steps["count"] == steps["bound"] == result.steps == 3 * math.ceil(1438 / 100)
    assert records["count"] == len(result.history["step"])


def test_train_estimate_with_a_target_gives_bounds(tmp_path: Path) -> None:
    est = estimate("train", "--model", MODEL, "--epochs", 2, "--seeds", 3, "--target-loss", 0.5)
    steps = by_what(est, "optimizer steps")
    assert steps["count"] is None and steps["bound"] == 2 * math.ceil(1438 / 64)
    assert "3 members" in steps["what"]
    assert est["seconds"] == 0.0  # nothing is certain before the run
    assert any("target" in note for note in est["notes"])


def test_surface_estimate_counts_the_grid_on_each_split(tmp_path: Path) -> None:
    ckpt = tmp_path / "train"
    invoke("train", "--model", MODEL, "--epochs", 1, "--out", ckpt, "--json")
    est = estimate("surface", "--checkpoint", ckpt, "--steps", 7, "--y-steps", 5, "--split", "test")
    assert by_what(est, "grid points, train split")["count"] == 35
    assert by_what(est, "grid points, test split")["count"] == 35
    line = estimate("surface", "--checkpoint", ckpt, "--steps", 9, "--line")
    assert [w["count"] for w in line["work"]] == [9]
    invoke("surface", "--checkpoint", ckpt, "--steps", 7, "--y-steps", 5, "--out", tmp_path / "s", "--json")
    assert load(tmp_path / "s").result.loss.shape == (7, 5)


def test_hessian_estimate_bounds_every_product_the_run_spends(tmp_path: Path) -> None:
    ckpt = tmp_path / "train"
    invoke("train", "--model", MODEL, "--epochs", 1, "--out", ckpt, "--json")
    pieces = ("--top", 2, "--trace", "--density", "--starts", 2, "--steps", 10, "--sharpness", "--per-layer")
    est = estimate("hessian", "--checkpoint", ckpt, *pieces)
    invoke("hessian", "--checkpoint", ckpt, *pieces, "--out", tmp_path / "h", "--json")
    results = load(tmp_path / "h").results
    density = by_what(est, "Hessian products, density")
    assert density["count"] == results["density"].hvps == 20
    assert results["top"].hvps <= by_what(est, "Hessian products, Lanczos")["bound"]
    assert results["trace"].hvps <= by_what(est, "Hessian products, auto trace")["bound"]
    assert results["sharpness"].hvps <= by_what(est, "Hessian products, the ascents")["bound"]
    layer_bound = (
        by_what(est, "Hessian products, λmax of")["bound"] + by_what(est, "Hessian products, per-layer")["bound"]
    )
    assert results["layers"].hvps <= layer_bound
    # both blocks of mlp:64-12-10 (780 and 130 parameters) exceed 100: Hutch++ within 100 products each
    assert by_what(est, "Hessian products, per-layer")["count"] is None
    assert by_what(est, "Hessian products, per-layer")["bound"] == 200


def test_estimate_rejects_bad_input_like_the_command(tmp_path: Path) -> None:
    result = runner.invoke(app, ["hessian", "--model", MODEL, "--top", 0, "--estimate"])
    assert result.exit_code == 2 and "Nothing to compute" in result.output


STUDY_SETTINGS = {  # small settings so the study itself runs in seconds beside its estimate
    "double-descent": ["widths=4,8", "epochs=3", "train_size=300"],
    "random-labels": ["fractions=0,1", "epochs=3", "train_size=200", "model=mlp:64-16-10"],
    "saddles": ["steps=60", "checkpoints=4", "train_size=200"],
    "gd-vs-sgd": ["gd_lrs=0.4", "sgd_lrs=0.4", "batch_sizes=32,64", "steps=40", "track_every=10", "points=5"],
    "restarts": ["problems=xor,digits", "seeds=4", "budget=0.02", "max_pairs=3", "points=5"],
}


@pytest.mark.parametrize("name", sorted(STUDY_SETTINGS))
def test_every_study_estimates_its_presets_and_writes_nothing(name: str, tmp_path: Path) -> None:
    est = estimate("study", name, "--quick", "--out", tmp_path / "never")
    assert est["command"] == f"study {name}" and est["work"]
    assert not (tmp_path / "never").exists()


def study_estimate_and_run(name: str, tmp_path: Path) -> tuple[dict, object]:
    settings = [arg for item in STUDY_SETTINGS[name] for arg in ("--set", item)]
    est = estimate("study", name, *settings)
    invoke("study", name, *settings, "--out", tmp_path / name, "--json")
    return est, load(tmp_path / name).result


def test_double_descent_estimate_counts_each_width(tmp_path: Path) -> None:
    est, result = study_estimate_and_run("double-descent", tmp_path)
    steps = [w for w in est["work"] if "optimizer steps" in w["what"]]
    assert [w["what"].split(":")[0] for w in steps] == ["h = 4", "h = 8"]
    assert all(w["count"] == 3 * math.ceil(300 / 128) for w in steps)  # the 300-row subset, batch 128
    assert list(result.widths) == [4, 8] and result.n_train == 300


def test_saddles_estimate_counts_the_checkpoints_the_run_measures(tmp_path: Path) -> None:
    est, result = study_estimate_and_run("saddles", tmp_path)
    density = by_what(est, "5 checkpoints: Hessian products, density")
    assert len(result.steps) == 5 and density["count"] == 5 * 4 * 48
    assert int(result.hvps.sum()) <= sum(w["bound"] for w in est["work"] if "Hessian products" in w["what"])


def test_gd_vs_sgd_estimate_counts_runs_tracks_and_barrier_lines(tmp_path: Path) -> None:
    est, result = study_estimate_and_run("gd-vs-sgd", tmp_path)
    assert by_what(est, "barrier lines")["count"] == 2 * 5 == int(np.isfinite(result.barrier_curve).sum())
    assert by_what(est, "gd η = 0.4, λmax tracked 4 times: gradient")["count"] == 4 == result.sharpness.shape[1]
    assert by_what(est, "sgd η = 0.4 B = 32: optimizer steps")["count"] == 40


def test_restarts_estimate_counts_pairs_and_restarts(tmp_path: Path) -> None:
    est, result = study_estimate_and_run("restarts", tmp_path)
    for problem in result.problems:
        assert by_what(est, f"{problem.name}: pairs aligned")["count"] == len(problem.pairs) == 3
        assert by_what(est, f"{problem.name}: gradient norm")["count"] == len(problem.seeds) == 4


def test_random_labels_estimate_bounds_training_and_curvature(tmp_path: Path) -> None:
    est, result = study_estimate_and_run("random-labels", tmp_path)
    steps = by_what(est, "2 fractions: optimizer steps")
    assert steps["count"] is None and steps["bound"] == 2 * 3 * math.ceil(200 / 64)
    spent = int(result.hvps.sum())
    assert spent <= sum(w["bound"] for w in est["work"] if "Hessian products" in w["what"])


def test_a_study_without_an_estimate_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from losslab.studies import STUDIES

    monkeypatch.setitem(STUDIES, "saddles", dataclasses.replace(STUDIES["saddles"], estimate=None))
    result = runner.invoke(app, ["study", "saddles", "--quick", "--estimate"])
    assert result.exit_code == 2 and "no cost estimate yet" in result.output


# ---------------------------------------------------------------- connect, interpolate, exact (issue 18)
def test_interpolate_estimate_counts_the_path_points_on_each_split(tmp_path: Path) -> None:
    ckpt = tmp_path / "train"
    invoke("train", "--model", MODEL, "--epochs", 1, "--out", ckpt, "--json")
    est = estimate("interpolate", "--to", ckpt, "--steps", 13, "--split", "both", "--out", tmp_path / "never")
    assert est["command"] == "interpolate"
    assert [w["count"] for w in est["work"]] == [13, 13]
    assert not (tmp_path / "never").exists()


def test_connect_estimate_counts_every_path_and_the_bend_training(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for seed, path in ((0, a), (1, b)):
        invoke("train", "--model", MODEL, "--epochs", 1, "--seed", seed, "--out", path, "--json")
    line = estimate("connect", a, b, "--points", 9, "--out", tmp_path / "never")
    assert by_what(line, "path points, train split")["count"] == 2 * 9  # naive and weight-matched lines
    assert by_what(line, "weight-matching sweeps")["count"] is None  # it stops when nothing changes: a bound
    assert by_what(line, "weight-matching sweeps")["bound"] == 100
    curve = estimate("connect", a, b, "--points", 9, "--path", "bezier", "--curve-epochs", 2, "--repair")
    assert by_what(curve, "path points, train split")["count"] == 4 * 9  # + REPAIR line + curve
    steps = by_what(curve, "bezier bend: optimizer steps")["count"]
    assert steps == 2 * math.ceil(1438 / 64)  # two epochs of the digits training rows in batches of 64
    assert any("REPAIR" in note for note in curve["notes"])
    assert not (tmp_path / "never").exists()


def test_exact_estimates_bound_the_solver_by_its_time_limits(tmp_path: Path) -> None:
    perceptron = estimate("exact", "perceptron", "--time-limit", 7)
    assert perceptron["bound_seconds"] == 7 and perceptron["seconds"] == 0  # nothing is promised below the limit
    three = estimate("exact", "three-node", "--elements", 6, "--subsets", 9, "--time-limit", 2, "--fewest-errors")
    assert by_what(three, "solver seconds: 2 MILP")["bound"] == 4
    assert by_what(three, "solver seconds: unsplittable-core search")["bound"] == 2 * (9 + 1)
    assert estimate("exact", "scaling", "--budget", 45)["bound_seconds"] == 45
    relu2 = estimate("exact", "relu2", "--time-limit", 10, "--out", tmp_path / "never")
    assert relu2["bound_seconds"] == 11 and any("gradient-training seeds" in n for n in relu2["notes"])
    assert not (tmp_path / "never").exists()


def test_an_estimate_for_ray_local_divides_by_this_machines_cpus(tmp_path: Path) -> None:
    import os

    ckpt = tmp_path / "train"
    invoke("train", "--model", MODEL, "--epochs", 1, "--out", ckpt, "--json")
    est = estimate("surface", "--checkpoint", ckpt, "--steps", 7, "--ray", "local")
    workers = os.cpu_count() or 1
    assert est["workers"] == workers
    assert est["seconds_at_best"] == pytest.approx(est["seconds"] / workers, rel=1e-12)
    table = invoke("surface", "--checkpoint", ckpt, "--steps", 7, "--ray", "local", "--estimate").stdout
    if workers > 1:
        assert f"on {workers} Ray workers: at best" in table
