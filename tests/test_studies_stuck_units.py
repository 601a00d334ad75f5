"""Dead/stuck units: activations against the model's own forward, exact removal, the study, resume, estimate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import kill_mid_sweep_then_resume
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.data import as_dataset
from losslab.errors import UserError
from losslab.models import build_model
from losslab.objective import Objective
from losslab.report import figures_of
from losslab.store import RunDir
from losslab.studies import STUDIES, StudyContext
from losslab.studies.stuck_units import (
    StuckUnitsConfig,
    StuckUnitsResult,
    _remove,
    _zeroed,
    hidden_activations,
    stuck_units,
)
from losslab.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


SPEC = "mlp:5-7-6-3"


def tiny_objective() -> Objective:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 5, generator=g, dtype=torch.float64)
    data = as_dataset((X, (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()), name="tiny")
    return Objective(build_model(SPEC, seed=0), "cross_entropy", data, dtype="float64")


def with_dead_units(objective: Objective) -> torch.Tensor:
    """θ0 with units 0 and 3 of the first hidden layer and unit 1 of the second killed by large negative biases."""
    theta = objective.theta0.clone()
    slices = objective.layout.slices
    theta[slices["1.bias"]][[0, 3]] = -1e3
    theta[slices["3.bias"]][1] = -1e3
    return theta


def test_hidden_activations_match_the_models_own_forward() -> None:
    objective = tiny_objective()
    theta = with_dead_units(objective)
    seen: list[torch.Tensor] = []
    model = build_model(SPEC, seed=0).double()
    model.load_state_dict(objective.state_dict(theta))
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen.append(out)) for m in model if isinstance(m, torch.nn.ReLU)
    ]
    model(objective.X)
    for hook in hooks:
        hook.remove()
    ours = hidden_activations(objective, theta)
    assert len(ours) == len(seen) == 2
    for a, b in zip(ours, seen, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)  # the same float64 products, possibly reordered
    assert (ours[0][:, [0, 3]] == 0).all() and (ours[1][:, 1] == 0).all()


def test_removing_dead_units_leaves_the_loss_unchanged_and_removing_live_ones_does_not() -> None:
    objective = tiny_objective()
    theta = with_dead_units(objective)
    dead = [(a == 0).all(0) for a in hidden_activations(objective, theta)]
    assert [int(d.sum()) for d in dead] == [2, 1]
    loss = objective.loss(theta)
    assert torch.equal(objective.loss(_zeroed(objective, theta, dead)), loss)  # bit-identical
    spec_of = lambda ws: "mlp:5-" + "-".join(map(str, ws)) + "-3"  # noqa: E731
    smaller = _remove(objective, theta, dead, spec_of)
    assert abs(smaller - float(loss)) <= 1e-12 * max(1.0, float(loss))
    # Brute force: the smaller network's forward written out with numpy.
    params = {k: v.numpy() for k, v in objective.layout.unflatten(theta).items()}
    keep0, keep1 = ~dead[0].numpy(), ~dead[1].numpy()
    h = np.maximum(objective.X.numpy() @ params["1.weight"][keep0].T + params["1.bias"][keep0], 0)
    h = np.maximum(h @ params["3.weight"][keep1][:, keep0].T + params["3.bias"][keep1], 0)
    logits = h @ params["5.weight"][:, keep1].T + params["5.bias"]
    logits -= logits.max(1, keepdims=True)
    y = objective.y.numpy()
    brute = float(np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(len(y)), y]))
    assert abs(smaller - brute) <= 1e-12
    # A unit that fires does matter: removing it changes the loss (the check can fail).
    live = [torch.zeros_like(dead[0]), torch.zeros_like(dead[1])]
    live[0][1] = True
    assert not torch.equal(objective.loss(_zeroed(objective, theta, live)), loss)


def test_first_layer_dead_units_never_move_under_plain_sgd() -> None:
    objective = tiny_objective()
    theta = with_dead_units(objective)
    rows = objective.layout.slices["1.weight"]
    W0 = theta[rows].view(7, 5)[[0, 3]].clone()
    trained = torch.as_tensor(
        train(objective, TrainConfig(lr=0.5, batch_size=8, steps=30), theta=theta, test=False).theta
    )
    assert torch.equal(trained[rows].view(7, 5)[[0, 3]], W0)
    assert (hidden_activations(objective, trained)[0][:, [0, 3]] == 0).all()
    assert not torch.equal(trained[rows].view(7, 5)[[1, 2]], theta[rows].view(7, 5)[[1, 2]])


SMALL = {"widths": (8, 32), "epochs": 3, "train_size": 600}


@pytest.fixture(scope="module")
def small() -> StuckUnitsResult:
    return stuck_units(StuckUnitsConfig(**SMALL), StudyContext())


def test_the_study_finds_dead_units_and_the_loss_ignores_them(small: StuckUnitsResult) -> None:
    assert small.invariants() == {"removal_violations": 0, "revived_first_layer": 0}
    assert small.widths.tolist() == [8, 32]
    for width, point in zip(small.widths, small.points, strict=True):
        assert point.dead.shape == point.stuck.shape == (len(point.steps), 4)
        assert np.isnan(point.stuck[0]).all() and ((0 <= point.dead) & (point.dead <= 1)).all()
        np.testing.assert_array_equal(point.dead_count, np.round(point.dead[-1] * width))
        if np.isfinite(point.loss_without_dead):
            assert abs(point.loss_without_dead - point.loss) <= 1e-12 * max(1.0, point.loss)
    assert sum(int(p.dead_count.sum()) for p in small.points) > 0  # lr 1.0 kills units: the check is not vacuous


def test_the_result_survives_the_store_and_draws_itself(tmp_path: Path, small: StuckUnitsResult) -> None:
    run = RunDir.create(tmp_path / "r", command="test", config={})
    run.save_result("r", small)
    run.complete(small.summary())
    back = load(run.path)["r"]
    assert isinstance(back, StuckUnitsResult) and json.dumps(back.summary()) == json.dumps(small.summary())
    figures = figures_of(back)
    assert {f.slug for f in figures} == {"over-training", "width"}
    assert all(f.static is not None and f.interactive is not None for f in figures)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"widths": ()}, "The 'widths' parameter of stuck-units must list"),
        ({"widths": (8, 0)}, "The 'widths' parameter of stuck-units must be an int ≥ 1. Got 0."),
        ({"depth": 0}, "The 'depth' parameter of stuck-units must be an int ≥ 1. Got 0."),
        ({"stuck_tol": -1.0}, "The 'stuck_tol' parameter of stuck-units must be"),
    ],
)
def test_settings_are_validated(options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        StuckUnitsConfig(**options)


def settings(items: dict) -> list[str]:
    out = []
    for key, value in items.items():
        value = ",".join(map(str, value)) if isinstance(value, tuple) else value
        out += ["--set", f"{key}={value}"]
    return out


def test_the_estimate_counts_one_run_per_width() -> None:
    result = runner.invoke(
        app, ["study", "stuck-units", *settings(SMALL), "--estimate", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    work = json.loads(result.stdout)["estimate"]["work"]
    steps = {w["what"].split(":")[0]: w["count"] for w in work if "optimizer steps" in w["what"]}
    assert steps == {"width 8": 3 * -(-600 // 64), "width 32": 3 * -(-600 // 64)}


RESUME = {"widths": (8, 16, 32, 64), "epochs": 3, "train_size": 600}


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "losslab.cli", "study", "stuck-units", *settings(RESUME), "--out", str(out), "--json"]


def test_a_killed_study_resumes_bit_identically(tmp_path: Path) -> None:
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    kill_mid_sweep_then_resume(_command, killed, clean, "stuck-units", at_least=1, below=4)
    a, b = load(killed), load(clean)
    assert a.manifest["resumed"] and a.status == "complete"
    for p, q in zip(a.result.points, b.result.points, strict=True):
        for field in ("dead", "stuck", "dead_count", "stuck_alive_count"):
            assert getattr(p, field).tobytes() == getattr(q, field).tobytes(), field
        assert (p.loss, p.loss_without_stuck_alive) == (q.loss, q.loss_without_stuck_alive)
    assert {p.name for p in (killed / "figures").glob("*.png")} == {"study-over-training.png", "study-width.png"}
    assert STUDIES["stuck-units"].config_from_dict(a.manifest["config"]["settings"]) == StuckUnitsConfig(**RESUME)


def test_a_width_that_diverges_is_reported_not_fatal() -> None:
    # lr 3 blows the digits MLP (4 × 128) up in its second epoch; the study keeps the width and says where.
    config = StuckUnitsConfig(widths=(128,), epochs=2, lr=3.0, train_size=600)
    result = stuck_units(config, StudyContext())
    (point,) = result.points
    assert point.diverged_step is not None and 0 < point.diverged_step <= 2 * -(-600 // 64)
    assert point.steps[-1] < point.diverged_step and len(point.steps) >= 2  # the non-finite snapshot is dropped
    assert point.dead.shape == (len(point.steps), 4) and np.isfinite(point.stuck[1:]).all()
    assert np.isfinite(point.dead).all() and np.isfinite(point.loss)
    assert result.summary()["diverged_step"] == [point.diverged_step]
    assert result.invariants() == {"removal_violations": 0, "revived_first_layer": 0}


def test_a_width_that_trains_records_no_divergence(small: StuckUnitsResult) -> None:
    assert small.summary()["diverged_step"] == [None, None]
    assert [p.steps[-1] for p in small.points] == [3 * -(-600 // 64)] * 2
