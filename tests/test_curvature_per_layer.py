"""Per-layer traces against the dense blocks of the Hessian and GGN (float64, tiny models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from losslab import Objective
from losslab.curvature import per_layer
from losslab.curvature.trace import exact_trace

pytestmark = pytest.mark.usefixtures("one_thread")


class Scale(nn.Module):
    """One learnable scalar: a one-element parameter block."""

    def __init__(self) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.tensor([0.7]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.s * x


def _objective() -> Objective:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), Scale(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(60, 6, generator=g), torch.randint(3, (60,), generator=g)
    return Objective(model, "cross_entropy", (X, y), dtype="float64")


def _blocks(objective: Objective, M: torch.Tensor) -> list[float]:
    return [float(M[w, w].trace()) for w in objective.layout.groups().values()]


@pytest.mark.parametrize("matrix", ["hessian", "ggn"])
def test_small_blocks_have_exact_traces(matrix: str) -> None:
    # Sizes 56, 1 and 27: all within the default 100 products, so every trace is exact. The old
    # shared full-operator probes put the one-element block 9 % and the first 15 % off here.
    objective = _objective()
    theta = objective.theta0
    if matrix == "hessian":
        M = objective.hessian(theta)
    else:
        M = objective.curvature_at(theta).ggn_many(torch.eye(objective.dim, dtype=torch.float64))
    layers = per_layer(objective, theta, ggn=matrix == "ggn")
    assert layers.sizes.tolist() == [56, 1, 27] and layers.trace_exact.all() and layers.trace_converged.all()
    np.testing.assert_allclose(layers.trace, _blocks(objective, M), rtol=1e-12, atol=1e-14)
    assert layers.trace_stderr.tolist() == [0.0, 0.0, 0.0] and not layers.warnings()
    assert layers.trace.sum() == pytest.approx(float(M.trace()), rel=1e-12)  # Σ_g tr M_gg = tr M


def test_large_blocks_carry_calibrated_error_bars() -> None:
    # With a budget of 20 products the 56- and 27-element blocks are Hutch++ estimates (the scalar
    # stays exact). Over 12 seeds, about 95 % of |estimate − exact| must fall within 2 standard
    # errors; ≥ 9 of the 12 for each block (a binomial(12, 0.95) gives < 9 with probability 0.2 %).
    objective = _objective()
    exact = _blocks(objective, objective.hessian(objective.theta0))
    at = objective.curvature_at(objective.theta0)
    z = []
    for seed in range(12):
        layers = per_layer(objective, at, trace_samples=20, seed=seed)
        assert layers.trace_exact.tolist() == [False, True, False]
        assert layers.trace[1] == pytest.approx(exact[1], rel=1e-12)
        z.append(np.abs(layers.trace - exact)[[0, 2]] / layers.trace_stderr[[0, 2]])
        for i in (0, 2):  # converged means its error bar met the whole trace's target
            assert not layers.trace_converged[i] or layers.trace_stderr[i] <= 1e-2 * abs(layers.trace[i])
    within = (np.asarray(z) <= 2).sum(0)
    assert within.min() >= 9, within


def test_exact_trace_of_an_operator_matches_the_dense_trace() -> None:
    A = torch.randn(23, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    A = A + A.T
    est = exact_trace(A, block=4)
    assert est.estimate == pytest.approx(float(A.trace()), rel=1e-13) and est.hvps == 23 and est.stderr == 0
