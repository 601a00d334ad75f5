"""The Blum–Rivest 3-node network: generator, MILP vs brute force, theorem, scaling, relaxation."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linprog

import losslab.exact.solver as solver_module
from losslab.data import set_splitting_instance
from losslab.data.set_splitting import FANO_PLANE
from losslab.errors import UserError
from losslab.exact import (
    SolverError,
    and_outputs,
    brute_force_splitting,
    certify_three_node,
    element_sizes,
    network_splitting,
    splitting_network,
    three_node_relaxation,
    three_node_scaling,
    train_three_node,
)
from losslab.store import Chunks
from losslab.train import TrainConfig


def _colourings(n: int) -> np.ndarray:
    return np.array(list(itertools.product((False, True), repeat=n)))


def test_fano_plane_is_not_two_colourable() -> None:
    lines = np.zeros((7, 7), dtype=bool)
    for r, line in enumerate(FANO_PLANE):
        lines[r, list(line)] = True
    assert not any(((lines & c).any(1) & (lines & ~c).any(1)).all() for c in _colourings(7))


@pytest.mark.parametrize("n", [5, 7, 9])
def test_generator_plants_what_it_says(n: int) -> None:
    solvable = set_splitting_instance(n, n + 2, seed=1, kind="solvable")
    assert solvable.planted is not None and solvable.splits(solvable.planted)
    unsolvable = set_splitting_instance(n, n + 2, seed=1, kind="unsolvable")
    assert not any(unsolvable.splits(c) for c in _colourings(n))
    core = unsolvable.subsets[unsolvable.core]
    assert not any(((core & c).any(1) & (core & ~c).any(1)).all() for c in _colourings(n))
    again = set_splitting_instance(n, n + 2, seed=1, kind="unsolvable")
    np.testing.assert_array_equal(unsolvable.subsets, again.subsets)
    assert len({tuple(r) for r in solvable.subsets}) == n + 2  # distinct subsets


def test_generator_refuses_impossible_requests() -> None:
    with pytest.raises(UserError, match="distinct 3-element subsets"):
        set_splitting_instance(4, 10, seed=0)
    with pytest.raises(UserError, match="'kind' parameter"):
        set_splitting_instance(5, 5, seed=0, kind="maybe")


def test_points_are_the_blum_rivest_points() -> None:
    instance = set_splitting_instance(4, 3, seed=0)
    X, y = instance.points()
    np.testing.assert_array_equal(X[0], 0)
    np.testing.assert_array_equal(X[1:5], np.eye(4))
    np.testing.assert_array_equal(X[5:], instance.subsets)
    np.testing.assert_array_equal(y, [1, 0, 0, 0, 0, 1, 1, 1])


def _instances() -> list[tuple[int, int, str, int]]:
    """Each (n ≤ 8, m, kind, seed) the generator makes, m from n to 2n (size-2 subsets at n = 3)."""
    out = []
    for n, kind, seed in itertools.product(range(3, 9), ("random", "solvable", "unsolvable"), range(2)):
        for m in sorted({n, (3 * n) // 2, 2 * n}):
            try:
                set_splitting_instance(n, m, seed=seed, kind=kind, size=2 if n == 3 else 3)
            except UserError:  # more subsets than exist for this n
                continue
            out.append((n, m, kind, seed))
    return out


@pytest.mark.parametrize(("n", "m", "kind", "seed"), _instances())
def test_theorem_splitting_exists_iff_network_fits(n: int, m: int, kind: str, seed: int) -> None:
    instance = set_splitting_instance(n, m, seed=seed, kind=kind, size=2 if n == 3 else 3)
    X, y = instance.points()
    # The Cramer–Hadamard bound does not rely on the theorem, so this tests it.
    fit = train_three_node(X, y, weight_bound="auto")
    assert fit.exact
    found = brute_force_splitting(instance)
    assert (found is not None) == fit.trainable
    if fit.trainable:
        assert (and_outputs(X, fit.W, fit.b) == (y == 1)).all()
        assert instance.splits(network_splitting(instance, fit.W, fit.b))  # network ⇒ splitting
    if found is not None:
        W, b = splitting_network(instance, found)  # splitting ⇒ network, weights within 2n
        assert (and_outputs(X, W, b) == (y == 1)).all() and np.abs(W).max() <= 2 * n
    # The theorem's bound M = 2n gives the same answers.
    assert train_three_node(X, y, weight_bound="theorem", instance=instance).trainable == fit.trainable


def test_certify_reports_agreement() -> None:
    result = certify_three_node(set_splitting_instance(7, 12, seed=0, kind="unsolvable"))
    assert result.agrees and not result.decision.trainable and result.splitting_exists == 0
    result = certify_three_node(set_splitting_instance(7, 12, seed=0, kind="solvable"))
    assert result.agrees and result.decision.trainable and result.splitting_exists == 1


def _dichotomies(X: np.ndarray) -> list[np.ndarray]:
    """Every labelling of the points a single threshold unit realizes (one LP per labelling)."""
    out = []
    for labels in itertools.product((0, 1), repeat=len(X)):
        s = 2.0 * np.array(labels) - 1
        lp = linprog(
            np.zeros(X.shape[1] + 1),
            A_ub=-(s[:, None] * np.c_[X, np.ones(len(X))]),
            b_ub=-np.ones(len(X)),
            bounds=[(None, None)] * (X.shape[1] + 1),
            method="highs",
        )
        if lp.status == 0:
            out.append(np.array(labels, dtype=bool))
    return out


@pytest.mark.parametrize(("kind", "seed"), [("unsolvable", 0), ("unsolvable", 1), ("random", 2)])
def test_fewest_errors_matches_pairs_of_units(kind: str, seed: int) -> None:
    instance = set_splitting_instance(3, 3, seed=seed, kind=kind, size=2)
    X, y = instance.points()
    units = _dichotomies(X)
    best = min(int(((a & b) != (y == 1)).sum()) for a in units for b in units)
    fit = train_three_node(X, y, fewest=True)
    assert fit.exact and fit.errors == best
    assert int((and_outputs(X, fit.W, fit.b) != (y == 1)).sum()) == fit.errors


def test_timeout_is_a_status_not_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stopped:
        status, x, fun, message, mip_node_count = 1, None, None, "Time limit reached", 17

    monkeypatch.setattr(solver_module, "milp", lambda *a, **k: Stopped())
    X, y = set_splitting_instance(6, 9, seed=0).points()
    with pytest.raises(SolverError, match="time_limit=0.5 s") as caught:
        train_three_node(X, y, time_limit=0.5)
    assert caught.value.status == "time_limit"


def test_scaling_stops_at_the_budget_and_resumes_identically(tmp_path: Path) -> None:
    sizes = element_sizes(4, 400, 2.0)
    result = three_node_scaling(sizes, seeds=(0,), budget_seconds=0.3)
    assert result.stopped == "budget" and len(result.elements) < len(sizes)
    assert "budget of 0.3 s" in result.note or "budget ran out" in result.note
    assert result.summary()["theorem_disagreements"] == 0
    plan = sizes[:6]
    chunks = Chunks(tmp_path / "c", {"plan": plan})
    first = three_node_scaling(plan[:3], seeds=(0, 1), budget_seconds=100, chunks=chunks)  # "killed" half way
    full = three_node_scaling(plan, seeds=(0, 1), budget_seconds=100, chunks=Chunks(tmp_path / "c", {"plan": plan}))
    np.testing.assert_array_equal(full.milp_seconds[:6], first.milp_seconds)  # loaded, not recomputed
    np.testing.assert_array_equal(full.trainable[:6], first.trainable)
    assert full.stopped == "complete" and len(full.elements) == 12


def test_relaxation_never_beats_the_exact_answer() -> None:
    config = TrainConfig(optimizer="adam", lr=0.1, batch_size=None, steps=300, record_every=50)
    for kind in ("unsolvable", "solvable"):
        instance = set_splitting_instance(5, 7, seed=0, kind=kind)
        X, y = instance.points()
        trainable = train_three_node(X, y).trainable
        result = three_node_relaxation(X, y, trainable=trainable, seeds=6, config=config)
        assert result.hard_errors.shape == (6,)
        if not trainable:
            assert (result.hard_errors >= 1).all() and (result.first_solved < 0).all()
    assert (result.hard_errors == 0).any()  # the solvable one: some seed finds a consistent network


def test_scaling_can_run_the_relaxation_beside_the_milp() -> None:
    config = TrainConfig(optimizer="adam", lr=0.1, batch_size=None, steps=100, record_every=50)
    result = three_node_scaling([(5, 6)], seeds=(0, 1), budget_seconds=100, relax_seeds=2, relax_config=config)
    assert result.relax_seeds == 2 and result.relaxed.shape == (2,)
    assert ((result.relaxed >= 0) & (result.relaxed <= 1)).all()
    assert (result.relaxed[result.trainable == 0] == 0).all()  # never beats a proof of impossibility
