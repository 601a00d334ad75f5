"""Certified optima: the 3-node MILP as n grows, and the two-layer ReLU program at n = 100, d = 3.

Three-node network: random set-splitting instances (3-element subsets, m = 2n, near the
splittability threshold, seeds 0–2) certified by the MILP for n = 4 … 12, then onward
until ``--budget`` seconds are spent; the baseline is brute-force set splitting (the
obvious exact method: 2^(n−1) colourings) on the same instances, up to n = 22.
Goal: an n = 12 instance certified in under 60 s on 2 cores.

Two-layer ReLU network: teacher data (n = 100 training points, d = 3, one output),
λ = 1e-3, every activation pattern (323,600), certified by column generation (Clarabel
on a working set, pricing over all patterns, dual lower bound); goal under 30 s. The
baseline is the program written plainly: every pattern and every row handed to
Clarabel at once (vectorized cvxpy). At n = 100, d = 3 that is 2.6 million variables,
so the baseline runs on n = 30, d = 3 (8,179 patterns) beside column generation on the
same data. Then gradient training (``--sgd-seeds`` seeds of `RELU2_CONFIG`) on the
n = 100 problem, with the gaps to the certified optimum.

    python benchmarks/exact.py [--budget 60] [--sgd-seeds 16] [--no-baseline]
"""

from __future__ import annotations

import argparse
import time

import cvxpy as cp
import numpy as np
from _common import emit

from losslab.data import load_data, set_splitting_instance
from losslab.exact import (
    activation_patterns,
    brute_force_splitting,
    element_sizes,
    relu2_optimum,
    relu2_sgd_gap,
    three_node_scaling,
    train_three_node,
)


def teacher(n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    data = load_data(f"teacher:n={round(n / 0.8)},d={d}")  # 20 % goes to the test split
    return data.X_train.double().numpy(), data.y_train.double().numpy()[:, 0]


def plain_program(X: np.ndarray, y: np.ndarray, lam: float) -> float:
    """The convex program over every pattern and every row, in one vectorized cvxpy problem."""
    n = len(X)
    Xt = np.c_[X, np.ones(n)]
    D = activation_patterns(Xt).astype(float)
    D = D[D.any(1)]
    V = cp.Variable((len(D), Xt.shape[1]))
    W = cp.Variable((len(D), Xt.shape[1]))
    prediction = cp.sum(cp.multiply(D, (V - W) @ Xt.T), axis=0)
    norms = cp.sum(cp.norm(V, 2, axis=1)) + cp.sum(cp.norm(W, 2, axis=1))
    signs = 2 * D - 1
    constraints = [cp.multiply(signs, V @ Xt.T) >= 0, cp.multiply(signs, W @ Xt.T) >= 0]
    problem = cp.Problem(cp.Minimize(cp.sum_squares(prediction - y) / (2 * n) + lam * norms), constraints)
    problem.solve(solver="CLARABEL")
    assert problem.status == "optimal", problem.status
    return float(problem.value)


def three_node(budget: float) -> dict:
    start = time.perf_counter()
    result = three_node_scaling(element_sizes(4, 400, 2.0), seeds=(0, 1, 2), budget_seconds=budget)
    wall = time.perf_counter() - start
    per_n = {}
    for n in np.unique(result.elements):
        pick = (result.elements == n) & (result.trainable >= 0)
        if pick.any():
            brute = result.brute_seconds[pick]
            per_n[int(n)] = {
                "milp_max_s": round(float(result.milp_seconds[pick].max()), 4),
                "trainable": [int(t) for t in result.trainable[pick]],
                "brute_max_s": round(float(np.nanmax(brute)), 4) if np.isfinite(brute).any() else None,
            }
    # n = 12 both ways: a planted splitting and a planted unsplittable core.
    twelve = {}
    for kind in ("solvable", "unsolvable"):
        instance = set_splitting_instance(12, 24, seed=0, kind=kind)
        X, y = instance.points()
        fit = train_three_node(X, y, instance=instance)
        tick = time.perf_counter()
        found = brute_force_splitting(instance)
        twelve[kind] = {
            "trainable": fit.trainable,
            "milp_s": round(fit.seconds, 4),
            "nodes": fit.nodes,
            "brute_s": round(time.perf_counter() - tick, 4),
            "agree": fit.trainable == (found is not None),
        }
    return {
        "per_n": per_n,
        "n12": twelve,
        "stopped": result.stopped,
        "note": result.note,
        "disagreements": result.summary()["theorem_disagreements"],
        "wall_s": round(wall, 2),
    }


def relu2(sgd_seeds: int, baseline: bool) -> dict:
    lam = 1e-3
    X, y = teacher(100, 3)
    start = time.perf_counter()
    exact = relu2_optimum(X, y, lam)
    seconds = time.perf_counter() - start
    out = {
        "n": len(X),
        "d": X.shape[1],
        "lam": lam,
        "patterns": exact.pattern_count,
        "certified": exact.certified,
        "seconds": round(seconds, 2),
        "optimum": exact.optimum,
        "lower_bound": exact.lower_bound,
        "relative_gap": exact.gap / exact.optimum,
        "rounds": exact.rounds,
        "width": exact.width,
        "solver_gap": exact.solver_gap,
    }
    if baseline:
        Xs, ys = teacher(30, 3)
        tick = time.perf_counter()
        small = relu2_optimum(Xs, ys, lam)
        columns = time.perf_counter() - tick
        tick = time.perf_counter()
        reference = plain_program(Xs, ys, lam)
        plain = time.perf_counter() - tick
        out["baseline_n30_d3"] = {
            "patterns": small.pattern_count,
            "column_generation_s": round(columns, 2),
            "plain_program_s": round(plain, 2),
            "speedup": round(plain / columns, 1),
            "optimum": small.optimum,
            "plain_value": reference,
            "relative_difference": (small.optimum - reference) / reference,
        }
    if sgd_seeds:
        gap = relu2_sgd_gap(exact, seeds=sgd_seeds)
        out["sgd"] = {
            **gap.summary(),
            "relative_gap_min": float(gap.gaps.min() / exact.optimum),
            "relative_gap_max": float(gap.gaps.max() / exact.optimum),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=60.0, help="Seconds for the 3-node scaling sweep.")
    parser.add_argument("--sgd-seeds", type=int, default=16)
    parser.add_argument("--no-baseline", action="store_true", help="Skip the plain convex program (≈15 s).")
    args = parser.parse_args()
    emit("exact", {"three_node": three_node(args.budget), "relu2": relu2(args.sgd_seeds, not args.no_baseline)})


if __name__ == "__main__":
    main()
