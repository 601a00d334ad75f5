"""The min-error study: certified optimum ≤ every gradient seed, brute force agrees, planted bound, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.errors import UserError
from losslab.report import figures_of
from losslab.studies import STUDIES, StudyContext
from losslab.studies.min_error import MinErrorStudyResult

STUDY = STUDIES["min-error"]


@pytest.fixture(scope="module")
def quick() -> MinErrorStudyResult:
    return STUDY.run(STUDY.config("quick"), StudyContext())


def test_quick_preset_keeps_every_invariant(quick: MinErrorStudyResult) -> None:
    assert quick.stopped == "complete" and len(quick.elements) == quick.planned == 6
    assert quick.checks() == {
        "above_planted": 0,
        "seeds_below_optimum": 0,
        "brute_disagreements": 0,
        "bound_above_errors": 0,
    }
    # Checked here directly too, not only through the result's own bookkeeping.
    certified = quick.certified == 1
    assert certified.all()  # n ≤ 8: the weight bound is proven and HiGHS closes every gap
    assert (quick.errors[certified] <= quick.relax_best[certified]).all()
    assert (quick.relax_best <= quick.relax_median).all()
    assert (quick.errors <= quick.flips).all() and (quick.flips > 0).all()
    ran = quick.brute >= 0
    assert ran.sum() == 2 and (quick.elements[ran] == 5).all()  # the tiny n: 14 points each
    np.testing.assert_array_equal(quick.brute[ran], quick.errors[ran])
    assert ((quick.relax_solved >= 0) & (quick.relax_solved <= 1)).all()


def test_quick_preset_draws_its_figure(quick: MinErrorStudyResult) -> None:
    figures = figures_of(quick)
    assert [f.slug for f in figures] == ["min-error"] and figures[0].static is not None
    assert "Checks (all must be 0)" in figures[0].caption


def test_a_budget_stops_the_sweep_and_says_where() -> None:
    config = STUDY.config("quick", elements=(5, 6, 7, 8, 10), instances=1, relax_seeds=2, relax_steps=20, budget=1e-3)
    result = STUDY.run(config, StudyContext())
    assert result.stopped == "budget" and len(result.elements) == 1 < result.planned == 5
    assert "MILP budget of 0.001 s spent after 1 of 5 instances" in result.note


def test_a_rerun_resumes_from_the_chunks(tmp_path: Path) -> None:
    config = STUDY.config("quick", elements=(5, 6), instances=2, relax_seeds=2, relax_steps=20)
    first = STUDY.run(config, StudyContext(directory=tmp_path))
    again = STUDY.run(config, StudyContext(directory=tmp_path))
    np.testing.assert_array_equal(first.milp_seconds, again.milp_seconds)  # loaded, not re-timed
    np.testing.assert_array_equal(first.errors, again.errors)
    assert sorted(p.name for p in (tmp_path / "min-error").iterdir() if p.suffix == ".npz")


def test_bad_settings_are_user_errors() -> None:
    with pytest.raises(UserError, match="The 'noise' parameter of the min-error study"):
        STUDY.config("quick", noise=1.5)
    with pytest.raises(UserError, match="The 'elements' parameter of the min-error study must be an int ≥ 5"):
        STUDY.config("quick", elements=(3,))


def test_the_study_is_listed_and_runs_from_the_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["study", "list", "--json"], catch_exceptions=False)
    assert "min-error" in json.loads(listed.stdout)
    args = ["study", "min-error", "--quick", "--set", "elements=5", "--set", "instances=1", "--set", "relax_steps=20"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "s"), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["result"]
    assert summary["checks"]["brute_disagreements"] == 0 and summary["instances"] == 1
    assert isinstance(load(tmp_path / "s").result, MinErrorStudyResult)
    assert (tmp_path / "s" / "figures" / "study-min-error.png").is_file()


def test_estimate_times_the_relaxation_and_bounds_the_milps() -> None:
    result = CliRunner().invoke(app, ["study", "min-error", "--quick", "--estimate", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    estimate = json.loads(result.stdout)["estimate"]
    milp = [w for w in estimate["work"] if w["what"].startswith("MILPs")]
    assert milp == [{"what": "MILPs (each up to instance_time_limit)", "count": None, "bound": 6, "unit_seconds": 20.0}]
    steps = [w for w in estimate["work"] if "optimizer steps" in w["what"]]
    assert steps and steps[0]["count"] == 6 * 200  # 6 instances × 200 Adam steps (all seeds in one vmapped step)
    assert any("MILPs have spent 120 s" in note for note in estimate["notes"])


def test_the_teacher_family_costs_errors_and_keeps_the_invariants() -> None:
    config = STUDY.config("quick", family="teacher", elements=(5, 8, 10), instances=1, relax_seeds=2, relax_steps=50)
    result = STUDY.run(config, StudyContext())
    assert result.stopped == "complete" and all(v == 0 for v in result.checks().values())
    assert (result.certified == 1).all() and (result.errors <= result.flips).all()
    assert result.errors.max() >= 1  # unlike the set-splitting points, flips here cost errors
    assert result.brute[0] == result.errors[0]  # n = 5: 14 points, enumerated
