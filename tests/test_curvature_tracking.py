"""Sharpness along training: λmax at each tracked step against a dense eigensolver."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from losslab.curvature import SharpnessTrack, SharpnessTracker, hessian_operator
from losslab.errors import UserError
from losslab.objective import Objective
from losslab.store import RunDir, load
from losslab.train import TrainConfig, init_thetas, train, train_ensemble
from tests.conftest import TINY_CASES

pytestmark = pytest.mark.usefixtures("one_thread")


class _Recorder:
    """Keeps a float64 copy of θ at the steps the tracker measures."""

    def __init__(self, every: int) -> None:
        self.every, self.thetas = every, {}

    def on_start(self, state) -> None:
        self.on_step(state)

    def on_step(self, state) -> None:
        if state.step % self.every == 0:
            self.thetas[state.step] = state.theta.detach().clone()


def test_tracked_lambda_max_matches_dense_hessians():
    case = TINY_CASES[0]
    obj = Objective(case.make_model(), case.loss, case.data, dtype="float64")
    tracker, recorder = SharpnessTracker(every=3, tol=1e-10), _Recorder(3)
    config = TrainConfig(optimizer="gd", lr=0.2, steps=12, record_every=4)
    result = train(obj, config, callbacks=[recorder, tracker])
    track = tracker.result()
    assert track.steps.tolist() == [0, 3, 6, 9, 12]  # the initial θ too
    for step, value in zip(track.steps, track.lambda_max, strict=True):
        dense = hessian_operator(obj, recorder.thetas[int(step)]).dense()
        exact = float(torch.linalg.eigvalsh(dense).max())
        assert value == pytest.approx(exact, rel=1e-9)
    assert track.converged.all()
    np.testing.assert_allclose(track.two_over_lr, 2 / 0.2)
    np.testing.assert_allclose(track.threshold, 2 / 0.2)
    # on_record keeps the train loss of each record (steps 0, 4, 8, 12) as the trainer saw it.
    assert track.record_steps.tolist() == [0, 4, 8, 12]
    np.testing.assert_allclose(track.record_loss, result.history["loss"], rtol=1e-12)
    assert track.summary()["points"] == 5


def test_edge_of_stability_headline_numbers_match_dense_eigenvalues():
    # Full-batch GD at η = 1.6/λmax(θ₀) on the tanh MLP: λmax rises past 2/η within a few
    # steps (progressive sharpening) and then hovers around it (measured: λmax·η/2 between
    # 0.97 and 1.3 over steps 4–40), the edge-of-stability regime of Cohen et al. (2021).
    case = TINY_CASES[0]
    obj = Objective(case.make_model(), case.loss, case.data, dtype="float64")
    lam0 = float(torch.linalg.eigvalsh(obj.hessian(obj.theta0)).max())
    lr = 1.6 / lam0
    tracker, recorder = SharpnessTracker(every=1, tol=1e-10), _Recorder(1)
    train(obj, TrainConfig(optimizer="gd", lr=lr, steps=24), callbacks=[recorder, tracker])
    track = tracker.result()
    assert track.steps.tolist() == list(range(25))
    dense = np.array([float(torch.linalg.eigvalsh(obj.hessian(recorder.thetas[s])).max()) for s in range(25)])
    # Lanczos to a 1e-10 relative residual on a 26-dim Hessian: λmax to ~1e-10 relative
    np.testing.assert_allclose(track.lambda_max, dense, rtol=1e-9)
    edge = dense * lr / 2
    summary = track.summary()
    expected_first = int(np.flatnonzero(edge >= 1)[0])
    assert 0 < expected_first < 24  # the run really crosses, after step 0
    assert summary["first_crossing_step"] == expected_first
    assert summary["tail_ratio"] == pytest.approx(float(np.median(edge[-7:])), rel=1e-9)  # last ⌈25/4⌉ = 7
    assert summary["final_ratio"] == pytest.approx(edge[-1], rel=1e-9)
    assert 0.9 < summary["tail_ratio"] < 1.5
    never = SharpnessTracker(every=4)
    train(obj, TrainConfig(optimizer="gd", lr=0.2 / lam0, steps=8), callbacks=[never])
    assert never.result().summary()["first_crossing_step"] is None


def test_warm_start_makes_later_points_cheap():
    case = TINY_CASES[1]
    obj = Objective(case.make_model(), case.loss, case.data, dtype="float64")
    tracker = SharpnessTracker(every=1, tol=1e-6)
    train(obj, TrainConfig(optimizer="gd", lr=0.05, steps=8), callbacks=[tracker])
    track = tracker.result()
    # Each warm-started point costs less than the cold first one (measured: about half).
    assert track.hvps[1:].max() < track.hvps[0]


def test_thresholds_per_optimizer():
    case = TINY_CASES[0]
    obj = Objective(case.make_model(), case.loss, case.data, dtype="float64")
    momentum = SharpnessTracker(every=2)
    train(
        obj,
        TrainConfig(optimizer="momentum", lr=0.05, momentum=0.9, steps=2, batch_size=None),
        callbacks=[momentum],
    )
    assert momentum.result().threshold[0] == pytest.approx(3.8 / 0.05)
    adam = SharpnessTracker(every=2)
    train(obj, TrainConfig(optimizer="adam", lr=0.01, steps=2), callbacks=[adam])
    assert math.isnan(adam.result().threshold[0]) and adam.result().optimizer == "adam"


def test_result_round_trips_through_a_run(tmp_path):
    case = TINY_CASES[0]
    obj = Objective(case.make_model(), case.loss, case.data, dtype="float64")
    tracker = SharpnessTracker(every=2)
    train(obj, TrainConfig(optimizer="gd", lr=0.1, steps=4), callbacks=[tracker])
    run = RunDir.create(tmp_path / "run", command="test", config={})
    run.save_result("sharpness", tracker.result())
    back = load(tmp_path / "run")["sharpness"]
    assert isinstance(back, SharpnessTrack)
    np.testing.assert_array_equal(back.lambda_max, tracker.result().lambda_max)
    assert back.optimizer == "gd" and back.every == 2


def test_empty_and_bad_trackers():
    assert SharpnessTracker().result().summary() == {"points": 0}
    with pytest.raises(UserError, match="'every' parameter"):
        SharpnessTracker(every=0)
    case = TINY_CASES[0]
    obj = Objective(case.make_model(), case.loss, case.data, dtype="float64")
    thetas = init_thetas("mlp:3-4-2,act=tanh", [0, 1], obj)
    with pytest.raises(UserError, match="single seed"):
        train_ensemble(
            obj,
            TrainConfig(steps=2),
            thetas=thetas,
            seeds=[0, 1],
            callbacks=[SharpnessTracker(every=1)],
        )
