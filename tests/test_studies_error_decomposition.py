"""The error-decomposition study: fresh samples from the teacher, the checks of each term, resume, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from losslab import load
from losslab.cli import app
from losslab.data import load_data
from losslab.errors import UserError
from losslab.exact.relu2 import relu2_optimum, relu2_outputs
from losslab.exact.sgd_gap import RELU2_CONFIG, relu2_sgd_gap
from losslab.report import figures_of
from losslab.studies import STUDIES, StudyContext
from losslab.studies.error_decomposition import ErrorDecompositionResult, sample, teacher_network, train_students

# Settings small enough for a kill-and-resume round trip: three training chunks.
TINY = [
    "widths=1,8",
    "sizes=10,14,18",
    "draws=1",
    "seeds=2",
    "steps=60",
    "population_size=40",
    "population_draws=1",
    "risk_size=2000",
]


@pytest.mark.parametrize(("d", "hidden", "seed"), [(1, 3, 0), (3, 4, 2)])
def test_fresh_samples_follow_the_builtin_teacher(d: int, hidden: int, seed: int) -> None:
    U, alpha = teacher_network(d, hidden, seed)
    # The data set labels its points with the teacher we took: the same function (float32 round-off).
    data = load_data(f"teacher:n=400,d={d},hidden={hidden},seed={seed}")
    np.testing.assert_allclose(
        relu2_outputs(U, alpha, data.X_train.numpy()), data.y_train.numpy()[:, 0], rtol=0, atol=1e-5
    )
    # Independently of relu2_outputs: the torch formula of the builtin, from its own weights.
    teacher = data.meta["teacher"]
    X, g, y = sample(U, alpha, 20_000, 0.1, seed=7)
    Xt = torch.tensor(X, dtype=torch.float32)
    reference = (torch.relu(Xt @ teacher["W1"].T + teacher["b1"]) @ teacher["W2"].T + teacher["b2"])[:, 0]
    np.testing.assert_allclose(g, reference.double().numpy(), rtol=0, atol=1e-5)
    # Inputs N(0, I): mean and variance within 5 standard errors (SE = 1/√n and √(2/n)).
    n = len(X)
    assert np.abs(X.mean(0)).max() < 5 / np.sqrt(n)
    assert np.abs(X.var(0) - 1).max() < 5 * np.sqrt(2 / n)
    # Label noise N(0, σ²), independent of x: residual std within 5 SE (σ/√(2n)), no correlation with g.
    residual = y - g
    assert abs(residual.std() - 0.1) < 5 * 0.1 / np.sqrt(2 * n)
    assert abs(np.corrcoef(residual, g)[0, 1]) < 5 / np.sqrt(n)
    # The builtin's noisy labels have the same residual law around this teacher.
    noisy = load_data(f"teacher:n=4000,d={d},hidden={hidden},noise=0.1,seed={seed}")
    r = noisy.y_train.numpy()[:, 0] - relu2_outputs(U, alpha, noisy.X_train.numpy())
    assert abs(r.std() - 0.1) < 5 * 0.1 / np.sqrt(2 * len(r))
    # Seeds are independent streams.
    assert not np.allclose(sample(U, alpha, 10, 0.1, seed=1)[0], sample(U, alpha, 10, 0.1, seed=2)[0])


def test_the_numpy_adam_loop_matches_the_trainer() -> None:
    U, alpha = teacher_network(1, 3, 0)
    X, _, y = sample(U, alpha, 25, 0.1, seed=3)
    exact = relu2_optimum(X, y, 1e-3)
    config = replace(RELU2_CONFIG, steps=200, record_every=200)
    for width in (1, 6):
        reference = relu2_sgd_gap(exact, seeds=3, width=width, config=config)
        mine = train_students(X, y, 1e-3, width, [0, 1, 2], 200)
        # Same init, same Adam, same schedule in float64: only summation order differs (~1e-16 per step),
        # amplified over 200 steps of a non-convex problem; 1e-9 relative leaves room for that and nothing else.
        np.testing.assert_allclose(mine.objectives, reference.objectives, rtol=1e-9, atol=0)
        for k in range(3):
            U_ref, a_ref = reference.network(k)
            np.testing.assert_allclose(mine.U[k], U_ref, rtol=0, atol=1e-8)
            np.testing.assert_allclose(mine.alpha[k], a_ref, rtol=0, atol=1e-8)


@pytest.fixture(scope="module")
def quick() -> ErrorDecompositionResult:
    study = STUDIES["error-decomposition"]
    return study.run(study.config("quick"), StudyContext())


def test_the_terms_sum_to_the_measured_excess_risk(quick: ErrorDecompositionResult) -> None:
    r = quick
    total = r.approximation[..., None] + r.estimation[..., None] + r.optimization
    # Float64 sums of three differences of numbers ~1e-2: round-off is ~1e-17.
    np.testing.assert_allclose(total, r.excess, rtol=0, atol=1e-13)
    # R̂(g*) on each fresh sample agrees with σ²/2 within 5 standard errors (σ²/√(2N) for ½ mean of σ²χ²₁).
    n = r.config["risk_size"]
    se = r.noise**2 / np.sqrt(2 * n)
    assert np.abs(r.risk_teacher - r.risk_teacher_exact).max() < 5 * se


def test_optimization_is_never_below_the_certificate(quick: ErrorDecompositionResult) -> None:
    r = quick
    gap = r.gap[..., None]
    # J_train(ĥ) ≥ p* ≥ lower bound, and gap = J_train(ĥ_opt) − lower bound (or 0 for the best seed itself);
    # 1e-12 covers float64 round-off in the objectives (~1e-2).
    assert (r.objective_gap >= -gap - 1e-12).all()
    # The risk-level term is not bound this way (ĥ_opt fits the training set, not the distribution):
    # it is only checked to be finite here, and the figure shows its sign.
    assert np.isfinite(r.optimization).all()
    # Same for estimation: J_pop(ĥ_opt) ≥ J_pop(h_opt) − its gap on every population sample.
    assert (r.estimation_objective >= -r.population_gap[:, None, None, :] - 1e-12).all()
    # ĥ_opt's gap is honest: from the convex program where it was used, never negative.
    assert (r.gap >= -1e-12).all()
    # The convex network stands for ĥ_opt(m) only where it has at most m units.
    assert (r.convex_width[None] <= r.widths[:, None, None])[r.from_convex].all()
    assert r.from_convex.any() and (~r.from_convex).any(), "both constructions of ĥ_opt must be exercised"


def test_approximation_error_vanishes_when_the_class_contains_the_teacher(quick: ErrorDecompositionResult) -> None:
    r = quick
    contains = r.widths >= r.hidden
    # Rigorous on each noiseless population sample: R(h_opt) − R(g*) ≤ λΩ(g*) + gap (module docstring); 1e-12
    # is round-off.
    bound = r.teacher_penalty + r.population_gap
    assert (r.population_risk[contains] <= bound[contains] + 1e-12).all()
    # On the fresh samples: the same bound plus 5 standard errors of the estimate, and ≥ 0 within 5 SE.
    slack = 5 * r.approximation_se[contains]
    assert (r.approximation[contains] <= r.teacher_penalty + bound[contains].max() + slack).all()
    assert (r.approximation[contains] >= -slack).all()
    # The bias bound is small next to the other terms: at widths ≥ hidden the approximation error is a
    # small part of the excess risk.
    assert r.approximation[contains].mean() < 0.2 * r.excess[contains].mean()
    # A single unit cannot fit the teacher's three kinks: far above the bias bound.
    narrow = r.widths < r.hidden
    assert narrow.any() and (r.approximation[narrow] > 10 * r.teacher_penalty).all()


def test_settings_are_validated() -> None:
    study = STUDIES["error-decomposition"]
    with pytest.raises(UserError, match="'widths' parameter"):
        study.config("quick", widths=(0, 3))
    with pytest.raises(UserError, match="'lam' parameter"):
        study.config("quick", lam=0.0)
    result = CliRunner().invoke(app, ["study", "error-decomposition", "--set", "draws=0"])
    assert result.exit_code == 2 and "draws" in result.stderr


def _command(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "losslab.cli",
        "study",
        "error-decomposition",
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
    chunks = killed / "chunks" / "error-decomposition-training"
    deadline = time.time() + 180
    while len(list(chunks.glob("0*.npz"))) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(chunks.glob("0*.npz")))
    assert 1 <= done < 3, "the study must die mid-sweep for this test to mean anything"
    assert json.loads((killed / "run.json").read_text())["status"] == "running"
    subprocess.run(_command(killed), env=env, check=True, stdout=subprocess.DEVNULL)
    clean = tmp_path / "clean"
    subprocess.run(_command(clean), env=env, check=True, stdout=subprocess.DEVNULL)
    a, b = load(killed), load(clean)
    assert a.manifest["resumed"] and a.status == "complete"
    for field in ("approximation", "estimation", "optimization", "excess", "objective_gap", "gap"):
        assert getattr(a.result, field).tobytes() == getattr(b.result, field).tobytes(), field
    figures = figures_of(a.result)
    assert len(figures) == 2 and all(f.static is not None and f.interactive is not None for f in figures)
    assert list((killed / "figures").glob("*.png"))


def test_cli_lists_and_estimates() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["study", "list", "--json"])
    assert listed.exit_code == 0 and "error-decomposition" in json.loads(listed.stdout)
    args = ["study", "error-decomposition", "--quick", *[a for item in TINY for a in ("--set", item)]]
    result = runner.invoke(app, [*args, "--estimate", "--json"])
    assert result.exit_code == 0, result.output
    estimate = json.loads(result.stdout)["estimate"]
    assert estimate["seconds"] > 0
    whats = [w["what"] for w in estimate["work"]]
    assert "population convex solves" in whats and any(w.startswith("m = 8, n = 18: Adam") for w in whats)
    assert STUDIES["error-decomposition"].demo
