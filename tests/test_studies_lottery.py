"""Pruning masks and masked training against brute force and the trainer; the lottery study, resume, CLI."""

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
from losslab.studies.lottery import LotteryConfig, LotteryResult, lottery
from losslab.train import TrainConfig, train
from losslab.train.pruning import (
    kept_counts,
    magnitude_mask,
    mask_violations,
    prunable,
    pruned_nonzeros,
    random_mask_like,
    train_masked,
)

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


def tiny_objective(spec: str = "mlp:5-8-6-3") -> Objective:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(48, 5, generator=g, dtype=torch.float64)
    data = as_dataset((X, (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()), name="tiny")
    return Objective(build_model(spec, seed=0), "cross_entropy", data, dtype="float64")


def brute_force_mask(objective: Objective, theta: torch.Tensor, keep: float, scope: str) -> np.ndarray:
    """The obvious loop: sort |θ| of each group with numpy and keep the top round(keep·N)."""
    values = theta.numpy()
    mask = np.ones(objective.dim, dtype=bool)
    parts = list(prunable(objective).values())
    for group in [parts] if scope == "global" else [[s] for s in parts]:
        index = np.concatenate([np.arange(s.start, s.stop) for s in group])
        order = index[np.argsort(-np.abs(values[index]), kind="stable")]
        mask[index] = False
        mask[order[: int(round(keep * len(index)))]] = True
    return mask


def test_only_weight_matrices_are_prunable() -> None:
    objective = tiny_objective()
    parts = prunable(objective)
    assert sorted(parts) == sorted(n for n, s in zip(objective.layout.names, objective.layout.shapes) if len(s) == 2)
    assert sum(s.stop - s.start for s in parts.values()) == 5 * 8 + 8 * 6 + 6 * 3


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("keep", [1.0, 0.5, 0.2, 0.05, 0.0])
def test_magnitude_masks_match_brute_force_and_have_the_requested_sparsity(scope: str, keep: float) -> None:
    objective = tiny_objective()
    theta = torch.randn(objective.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mask = magnitude_mask(objective, theta, keep, scope)
    np.testing.assert_array_equal(mask.numpy(), brute_force_mask(objective, theta, keep, scope))
    assert mask_violations(objective, mask, keep, scope) == 0
    counts = kept_counts(objective, mask)
    parts = prunable(objective)
    if scope == "layer":
        for name, s in parts.items():
            assert counts[name] == round(keep * (s.stop - s.start)), name
    else:
        assert counts["all"] == round(keep * sum(s.stop - s.start for s in parts.values()))
    biases = [s for n, s in objective.layout.slices.items() if n not in parts]
    assert all(mask[s].all() for s in biases)  # biases are never pruned
    # A mask built for another fraction reports how far it is from this one.
    if 0.0 < keep < 1.0:
        assert mask_violations(objective, magnitude_mask(objective, theta, 1.0, scope), keep, scope) > 0


def test_iterative_pruning_only_removes_survivors() -> None:
    objective = tiny_objective()
    g = torch.Generator().manual_seed(4)
    first = magnitude_mask(objective, torch.randn(objective.dim, generator=g, dtype=torch.float64), 0.5)
    # New weights whose largest entries sit where the first mask pruned: they must stay pruned.
    theta = torch.randn(objective.dim, generator=g, dtype=torch.float64) + 10.0 * (~first).double()
    second = magnitude_mask(objective, theta, 0.2, previous=first)
    assert not (second & ~first).any()
    assert mask_violations(objective, second, 0.2, "global") == 0


def test_random_masks_keep_the_per_layer_counts() -> None:
    objective = tiny_objective()
    mask = magnitude_mask(objective, objective.theta0, 0.3, "global")
    random = random_mask_like(objective, mask, seed=1)
    assert kept_counts(objective, random) == kept_counts(objective, mask)
    assert not torch.equal(random, mask)
    assert torch.equal(random, random_mask_like(objective, mask, seed=1))


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(optimizer="sgd", lr=0.2, batch_size=8, steps=15),
        TrainConfig(optimizer="momentum", lr=0.05, batch_size=16, steps=12, weight_decay=1e-3),
        TrainConfig(optimizer="adam", lr=0.01, batch_size=None, steps=10, weight_decay=1e-2),
    ],
)
def test_masked_training_with_nothing_pruned_is_the_trainer_bit_for_bit(config: TrainConfig) -> None:
    # The independent reference: losslab.train on the same objective, config and start.
    objective = tiny_objective()
    everything = torch.ones(objective.dim, dtype=torch.bool)
    theta, diverged = train_masked(objective, config, everything)
    reference = train(objective, config, test=False)
    assert not diverged
    assert np.array_equal(theta.numpy(), reference.theta)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_pruned_weights_are_exactly_zero_after_masked_training(optimizer: str) -> None:
    objective = tiny_objective()
    config = TrainConfig(optimizer=optimizer, lr=0.05, batch_size=8, steps=20, weight_decay=1e-2)
    mask = magnitude_mask(objective, objective.theta0, 0.3, "layer")
    theta, _ = train_masked(objective, config, mask)
    assert pruned_nonzeros(theta, mask) == 0
    assert (theta[~mask] == 0).all()
    assert (theta[mask] != objective.theta0[mask]).any()  # the kept weights did train
    # Unmasked training moves the same entries off zero: the check can fail.
    free, _ = train_masked(objective, config, torch.ones_like(mask), objective.theta0 * mask)
    assert pruned_nonzeros(free, mask) > 0


def test_a_rewound_run_continues_the_learning_rate_schedule_from_its_step() -> None:
    # Independent reference: full-batch GD written out by hand with the cosine rate of steps k … T−1.
    objective = tiny_objective()
    T, k, lr = 12, 5, 0.5
    config = TrainConfig(optimizer="gd", lr=lr, schedule="cosine", steps=T - k)
    mask = magnitude_mask(objective, objective.theta0, 0.5, "global")
    theta, diverged = train_masked(objective, config, mask, objective.theta0, start_step=k)
    reference = objective.theta0 * mask
    for step in range(k, T):
        rate = lr * 0.5 * (1.0 + np.cos(np.pi * step / T))
        reference = reference - rate * objective.grad(reference) * mask
    assert not diverged
    np.testing.assert_allclose(theta.numpy(), reference.numpy(), rtol=0, atol=1e-12)
    # The restarted schedule (start_step 0) is a different run: the comparison can fail.
    restarted, _ = train_masked(objective, config, mask, objective.theta0)
    assert np.abs(restarted.numpy() - reference.numpy()).max() > 1e-6
    with pytest.raises(UserError, match="The 'start_step' parameter of masked training must be an int ≥ 0"):
        train_masked(objective, config, mask, start_step=-1)


SMALL = {"model": "mlp:64-16-10", "epochs": 2, "keeps": (0.5, 0.1), "ks": (0, 4), "points": 3, "train_size": 400}


@pytest.fixture(scope="module")
def small() -> LotteryResult:
    return lottery(LotteryConfig(**SMALL), StudyContext())


def test_the_study_checks_its_invariants_and_fills_every_scheme(small: LotteryResult) -> None:
    assert small.invariants() == {"mask_violations": 0, "nonzero_pruned": 0, "diverged": 0}
    S, Q, K = 2, 2, 2
    assert small.scopes == ["global", "layer"] and small.keeps.tolist() == [0.5, 0.1] and small.ks.tolist() == [0, 4]
    assert small.ticket.shape == (S, Q, K) and small.imp.shape == (S, K, Q) and small.barrier.shape == (S, Q, K)
    for name in ("pruned", "reinit", "random_mask"):
        values = getattr(small, name)
        assert values.shape == (S, Q) and ((0 <= values) & (values <= 1)).all(), name
    assert np.isfinite(small.barrier[0]).all() and np.isnan(small.barrier[1]).all()  # measured for global only
    assert small.prunable == 64 * 16 + 16 * 10
    # The IMP chain's first round is one-shot pruning to the first keep: the same mask, the same run.
    np.testing.assert_array_equal(small.imp[:, :, 0], small.ticket[:, 0, :])
    summary = small.summary()
    assert summary["invariants"]["nonzero_pruned"] == 0 and "barrier" in summary["global"]


def test_winning_tickets_beat_random_masks_at_high_sparsity() -> None:
    # The anchor (Frankle & Carbin 2019), in a few seconds: at 5 % of the weights a ticket keeps
    # far more accuracy than a random mask (quick preset: 0.89 vs 0.42); 0.15 is a wide margin.
    config = LotteryConfig(keeps=(0.05,), ks=(0,), scopes=("global",), points=2)
    result = lottery(config, StudyContext())
    assert result.invariants()["nonzero_pruned"] == 0
    assert result.ticket[0, 0, 0] > result.random_mask[0, 0] + 0.15


def test_the_result_survives_the_store_and_draws_itself(tmp_path: Path, small: LotteryResult) -> None:
    run = RunDir.create(tmp_path / "r", command="test", config={})
    run.save_result("r", small)
    run.complete(small.summary())
    back = load(run.path)["r"]
    assert isinstance(back, LotteryResult) and back.summary() == small.summary()
    figures = figures_of(back)
    assert {f.slug for f in figures} == {"accuracy", "instability"}
    assert all(f.static is not None and f.interactive is not None for f in figures)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"keeps": (0.5, 0.0)}, "The 'keeps' parameter of lottery must be"),
        ({"keeps": ()}, "The 'keeps' parameter of lottery must list"),
        ({"ks": (0, -1)}, "The 'ks' parameter of lottery must be an int ≥ 0. Got -1."),
        ({"scopes": ("global", "row")}, "The 'scopes' parameter of lottery must be one of"),
        ({"points": 1}, "The 'points' parameter of lottery must be an int ≥ 2. Got 1."),
        ({"schedule": "step"}, "The 'schedule' parameter of lottery must be one of 'constant', 'cosine'."),
    ],
)
def test_settings_are_validated(options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        LotteryConfig(**options)


def test_rewind_steps_past_the_budget_are_refused() -> None:
    with pytest.raises(UserError, match=r"must lie in \[0, 23\)"):
        lottery(LotteryConfig(epochs=1, ks=(0, 23)), StudyContext())


def settings(items: dict) -> list[str]:
    out = []
    for key, value in items.items():
        value = ",".join(map(str, value)) if isinstance(value, tuple) else value
        out += ["--set", f"{key}={value}"]
    return out


def test_the_estimate_counts_every_masked_run() -> None:
    result = runner.invoke(app, ["study", "lottery", *settings(SMALL), "--estimate", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    work = {w["what"]: w for w in json.loads(result.stdout)["estimate"]["work"]}
    steps = {what.split(":")[0]: w["count"] for what, w in work.items() if "optimizer steps" in what}
    total = 2 * -(-400 // 64)  # two epochs of the 400-row subset in batches of 64
    S, Q = 2, 2
    # per rewind step: S·Q tickets + S·Q IMP rounds + 2 copies per global keep + 2 dense copies
    per_k = 2 * S * Q + 2 * Q + 2
    assert steps == {
        "dense run": total,
        "masked runs rewound to 0": per_k * total,
        "masked runs rewound to 4": per_k * (total - 4),
        "re-initialized and random-mask runs": 2 * S * Q * total,
    }
    lines = work["points on the lines between sparse copies (train and test)"]["count"]
    assert lines == (Q + 1) * 2 * 3


RESUME = {**SMALL, "keeps": (0.5, 0.2, 0.1), "scopes": ("global", "layer")}


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "losslab.cli", "study", "lottery", *settings(RESUME), "--out", str(out), "--json"]


def test_a_killed_study_resumes_bit_identically(tmp_path: Path) -> None:
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    kill_mid_sweep_then_resume(_command, killed, clean, "lottery-oneshot", at_least=2, below=6)
    a, b = load(killed), load(clean)
    assert a.manifest["resumed"] and a.status == "complete"
    for field in ("pruned", "ticket", "reinit", "random_mask", "imp", "barrier", "dense_barrier"):
        assert getattr(a.result, field).tobytes() == getattr(b.result, field).tobytes(), field
    assert a.result.invariants() == {"mask_violations": 0, "nonzero_pruned": 0, "diverged": 0}
    assert {p.name for p in (killed / "figures").glob("*.png")} == {"study-accuracy.png", "study-instability.png"}
    assert STUDIES["lottery"].config_from_dict(a.manifest["config"]["settings"]) == LotteryConfig(**RESUME)
