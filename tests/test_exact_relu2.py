"""Two-layer ReLU networks: certified optimum vs a plain cvxpy program, bounds, SGD above them."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

from losslab import Objective, TrainConfig, build_model, train
from losslab.errors import UserError
from losslab.exact import (
    SolverError,
    activation_patterns,
    relu2_objective,
    relu2_optimum,
    relu2_outputs,
    relu2_sgd_gap,
)
from losslab.exact.relu2 import _Program


def _data(n: int, d: int, seed: int, duplicate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if duplicate:  # a repeated point and three collinear ones: degenerate arrangements
        X[1] = X[0]
        X[2] = 0.5 * (X[3] + X[4])
    y = np.sin(2 * X[:, 0]) + 0.3 * rng.standard_normal(n)
    return X, y


def _cvxpy_optimum(X: np.ndarray, y: np.ndarray, lam: float) -> float:
    """The convex program of Pilanci & Ergen written plainly in cvxpy: every pattern, every row."""
    n = len(X)
    Xt = np.c_[X, np.ones(n)]
    D = activation_patterns(Xt).astype(float)
    D = D[D.any(1)]
    V = cp.Variable((len(D), Xt.shape[1]))
    W = cp.Variable((len(D), Xt.shape[1]))
    prediction = sum(cp.multiply(D[i], Xt @ (V[i] - W[i])) for i in range(len(D)))
    regularizer = sum(cp.norm(V[i], 2) + cp.norm(W[i], 2) for i in range(len(D)))
    constraints = [cp.multiply(2 * D[i] - 1, Xt @ V[i]) >= 0 for i in range(len(D))]
    constraints += [cp.multiply(2 * D[i] - 1, Xt @ W[i]) >= 0 for i in range(len(D))]
    problem = cp.Problem(cp.Minimize(cp.sum_squares(prediction - y) / (2 * n) + lam * regularizer), constraints)
    problem.solve(solver="CLARABEL")
    assert problem.status == "optimal"
    return float(problem.value)


CASES = [
    (8, 1, 0, 1e-2, False),
    (10, 2, 1, 1e-2, False),
    (9, 2, 2, 1e-1, True),
    (12, 1, 3, 1e-3, True),
]


@pytest.mark.parametrize(("n", "d", "seed", "lam", "duplicate"), CASES)
def test_certified_optimum_matches_plain_cvxpy(n: int, d: int, seed: int, lam: float, duplicate: bool) -> None:
    X, y = _data(n, d, seed, duplicate)
    result = relu2_optimum(X, y, lam)
    reference = _cvxpy_optimum(X, y, lam)
    assert result.certified
    # Clarabel stops at a relative gap of 1e-8 in both solves; 1e-6 leaves room for the
    # recovered network's evaluation and the pruning of round-off blocks.
    assert result.optimum == pytest.approx(reference, rel=1e-6)
    assert result.lower_bound <= reference * (1 + 1e-7)
    assert result.lower_bound <= result.optimum
    # The recovered network's own objective is the optimum: evaluated from U and α directly.
    assert relu2_objective(result.U, result.alpha, X, y, lam) == pytest.approx(result.optimum, rel=1e-12)
    assert result.optimum == pytest.approx(result.convex_value, rel=1e-6)


def test_every_network_is_above_the_lower_bound() -> None:
    # Any network maps to a feasible point of the program with no larger objective (AM–GM).
    X, y = _data(12, 2, 4)
    lam = 1e-2
    result = relu2_optimum(X, y, lam)
    rng = np.random.default_rng(0)
    for width in (1, 3, 10, 40):
        for scale in (0.1, 1.0, 3.0):
            U, alpha = scale * rng.standard_normal((width, 3)), scale * rng.standard_normal(width)
            assert relu2_objective(U, alpha, X, y, lam) >= result.lower_bound
    # Perturbing the optimal network never goes below either.
    for _ in range(20):
        U = result.U + 1e-3 * rng.standard_normal(result.U.shape)
        assert relu2_objective(U, result.alpha, X, y, lam) >= result.lower_bound


def test_sgd_values_are_never_below_the_certified_optimum() -> None:
    X, y = _data(20, 2, 5)
    exact = relu2_optimum(X, y, 1e-2)
    config = TrainConfig(optimizer="adam", lr=2e-2, batch_size=None, steps=300, schedule="cosine", record_every=100)
    gap = relu2_sgd_gap(exact, seeds=6, config=config)
    assert gap.below_bound == 0
    # Rigorous lower bound, so no tolerance beyond float64 round-off of the sums.
    assert (gap.objectives >= exact.lower_bound - 1e-12).all()
    assert gap.width == 2 * exact.width and gap.config["weight_decay"] == 1e-2
    U, alpha = gap.network(0)
    assert relu2_objective(U, alpha, X, y, 1e-2) == pytest.approx(gap.objectives[0], rel=1e-10)


def test_trainer_weight_decay_is_the_gradient_of_half_lambda_norm_squared() -> None:
    # The program's regularizer is (λ/2)‖θ‖² over W₁, b₁ and α; the trainer's coupled decay adds λθ.
    X, y = _data(10, 2, 6)
    data = (torch.tensor(X), torch.tensor(y)[:, None])
    objective = Objective(build_model("relu2:2-5", seed=1), "mse", data, dtype="float64")
    lam, lr = 0.3, 0.05
    result = train(objective, TrainConfig(optimizer="gd", lr=lr, steps=1, weight_decay=lam), test=False)
    theta = objective.theta0.clone().requires_grad_(True)
    total = objective.batch_loss(theta, torch.arange(10)) + 0.5 * lam * theta.square().sum()
    (grad,) = torch.autograd.grad(total, theta)
    np.testing.assert_allclose(result.theta, (objective.theta0 - lr * grad).numpy(), rtol=1e-12, atol=1e-14)


def test_sampled_patterns_give_a_valid_network_and_an_upper_bound() -> None:
    X, y = _data(14, 2, 7)
    full = relu2_optimum(X, y, 1e-2)
    sampled = relu2_optimum(X, y, 1e-2, patterns="sampled:15", seed=1)
    assert not sampled.certified
    assert "sampled" in sampled.summary()["scope"]
    assert sampled.optimum >= full.lower_bound
    assert relu2_objective(sampled.U, sampled.alpha, X, y, 1e-2) == pytest.approx(sampled.optimum, rel=1e-12)


def test_pricing_bound_is_above_the_true_maximum() -> None:
    # ρ = max_{‖u‖≤1} ν·(X̃u)_+ for an arbitrary ν: the bound must cover it (the certificate's
    # rigour rests on it).
    X, y = _data(15, 2, 8)
    Xt = np.c_[X, np.ones(15)]
    cells, cones = activation_patterns(Xt, facets=True)
    keep = cells.any(1)
    program = _Program(Xt, y, 1e-2, Xt, np.arange(15), cells[keep], cones[keep])
    rng = np.random.default_rng(0)
    for _ in range(3):
        nu = rng.standard_normal(15)
        rho, _ = program.price(nu, set(), want=10**6)
        assert rho is not None
        U = rng.standard_normal((3, 200_000))
        U /= np.linalg.norm(U, axis=0)
        values = nu @ np.maximum(Xt @ U, 0.0)
        assert max(values.max(), (-values).max()) <= rho * (1 + 1e-12)
        # and it is tight: dense sampling of the sphere gets within 1 % of it.
        assert max(values.max(), (-values).max()) >= 0.99 * rho


def test_outputs_are_the_relu_network() -> None:
    U = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0]])
    alpha = np.array([2.0, -1.0])
    X = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    expected = [
        2 * max(0, 0.5) - max(0, -1),
        2 * max(0, 0.5) - max(0, 1),
        2 * max(0, -0.5) - max(0, 1),
    ]
    np.testing.assert_allclose(relu2_outputs(U, alpha, X), expected)


def test_bad_inputs_are_one_line_errors() -> None:
    X, y = _data(10, 1, 9)
    with pytest.raises(UserError, match="'all' or 'sampled:N'"):
        relu2_optimum(X, y, 1e-2, patterns="some")
    with pytest.raises(UserError, match="activation patterns.*sampled:N"):
        relu2_optimum(
            np.random.default_rng(0).standard_normal((300, 4)),
            np.zeros(300),
            1e-2,
            max_patterns=1000,
        )
    with pytest.raises(UserError, match="'lam' parameter"):
        relu2_optimum(X, y, 0.0)
    with pytest.raises(SolverError, match="not certified within time_limit") as caught:
        relu2_optimum(*_data(40, 2, 1), 1e-3, time_limit=1e-9)
    assert caught.value.status == "time_limit"
