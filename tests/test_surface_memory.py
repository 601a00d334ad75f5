"""A 21×21 plane of an 11M-parameter model in bounded memory (issue 17 §2).

Formed whole, the plane's 441 parameter points would be a [441, 11M] float32 block of
19.4 GB. `losslab.surface.points` forms at most ``memory_budget`` bytes of points at a
time, so the peak resident memory the plane adds must stay below that budget plus a
few parameter vectors (the span of the plane and copies of θ and the directions). Measured with
Linux's peak-RSS counter (VmHWM), reset just before the plane (``/proc/self/clear_refs``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from losslab import Objective
from losslab.surface import plane, random_directions

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not Path("/proc/self/clear_refs").exists(),
    reason="needs Linux's peak-RSS counter",
)

INPUTS, WIDTH = 1_375_000, 8  # 11.0M weights in the first layer; 4 data rows keep the compute small
BUDGET = 256 << 20


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM line")


def test_a_21x21_plane_of_an_11m_parameter_model_stays_inside_the_memory_budget(one_thread) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(INPUTS, WIDTH), torch.nn.ReLU(), torch.nn.Linear(WIDTH, 2))
    X, y = torch.randn(4, INPUTS), torch.tensor([0, 1, 0, 1])
    objective = Objective(model, "cross_entropy", (X, y), memory_budget=BUDGET)
    dim = objective.dim
    assert dim > 11_000_000
    theta = objective.theta0
    directions = random_directions(objective.layout, theta, "filter", seed=0)
    axis = np.linspace(-1.0, 1.0, 21)
    vector = dim * theta.element_size()
    assert 441 * vector > 70 * BUDGET  # the whole block would not come close to fitting

    Path("/proc/self/clear_refs").write_text("5")  # restart the peak-RSS counter here
    start = _peak_rss()
    surface = plane(objective, theta, directions, axis, axis)
    added = _peak_rss() - start

    assert surface.loss.shape == (21, 21) and np.isfinite(surface.loss).all()
    assert surface.loss[10, 10] == pytest.approx(float(objective.loss(theta)), rel=1e-5)  # the centre is θ
    # The budget's points, plus what a slice holds beside them: the span V = [θ, d₁, d₂] stacked (3
    # vectors), its coefficients' copies of θ and the directions in the objective's dtype (3), and
    # one point of slack. Measured here: 464 MiB of a 550 MiB bound; formed whole: 19.4 GB.
    assert added < BUDGET + 7 * vector, f"the plane added {added / 2**20:.0f} MiB at its peak"
