"""Slices, trajectories and interpolation against direct evaluation, at float64 on tiny models.

The reference loss copies θ into a fresh module with ``vector_to_parameters`` and calls
PyTorch's own losses, one point at a time: no ``Objective`` in the loop. Tolerances:
float64 sums of ≤ 30 examples a few dozen flops deep agree to ~1e-15 relative; 1e-10
leaves room for the different summation orders of the batched paths.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TinyCase
from torch.nn.utils import vector_to_parameters

from losslab.data import Dataset
from losslab.errors import UserError
from losslab.objective import Objective
from losslab.parallel import LocalExecutor
from losslab.store import Chunks
from losslab.surface import (
    Directions,
    axis,
    bump,
    interpolate,
    line,
    plane,
    plane_key,
    project,
    random_directions,
)

RTOL = 1e-10


def reference(case: TinyCase, X: torch.Tensor | None = None, y: torch.Tensor | None = None):
    """(loss, accuracy) at θ, computed the obvious way."""
    model = copy.deepcopy(case.make_model())
    X = case.data.X_train if X is None else X
    y = case.data.y_train if y is None else y

    def evaluate(theta: torch.Tensor) -> tuple[float, float | None]:
        vector_to_parameters(theta.detach().clone(), model.parameters())
        with torch.no_grad():
            out = model(X)
        if case.loss == "cross_entropy":
            return float(F.cross_entropy(out, y)), float((out.argmax(1) == y).double().mean())
        return float(0.5 * ((out - y) ** 2).sum() / len(X)), None

    return evaluate


def test_axis_is_closed_and_validated() -> None:
    for lo, hi, steps in ((-1.0, 1.0, 51), (-0.3, 0.7, 7), (1e-3, 2.5, 2), (-2.0, -0.1, 13)):
        values = axis(lo, hi, steps)
        assert values[0] == lo and values[-1] == hi and len(values) == steps
        np.testing.assert_allclose(np.diff(values), (hi - lo) / (steps - 1), rtol=1e-12)
    # a grid spanning 0 at a step boundary holds θ itself: 0 exactly, not -5.6e-17
    assert (axis(-0.3, 0.7, 11) == 0.0).sum() == 1 and (axis(-1.0, 1.0, 51) == 0.0).sum() == 1
    with pytest.raises(UserError, match="int ≥ 2. Got 1"):
        axis(-1, 1, 1)
    with pytest.raises(UserError, match="min < max"):
        axis(1, 1, 5)
    with pytest.raises(UserError, match="min < max"):
        axis(1, -1, 5)
    with pytest.raises(UserError, match="finite"):
        axis(-1, float("inf"), 5)


def test_line_matches_direct_evaluation_and_holds_both_endpoints(tiny_case: TinyCase) -> None:
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    dirs = random_directions(obj.layout, obj.theta0, "filter", seed=1, count=1)
    alphas = axis(-0.75, 1.25, 9)
    result = line(obj, obj.theta0, dirs, alphas)
    ref = reference(tiny_case)
    d = torch.as_tensor(dirs.d1)
    assert result.alphas[0] == -0.75 and result.alphas[-1] == 1.25
    for k, alpha in enumerate(alphas):
        loss, acc = ref(obj.theta0 + alpha * d)
        assert result.loss[k] == pytest.approx(loss, rel=RTOL)
        if acc is not None:
            assert result.accuracy[k] == acc  # counts of correct argmaxes: exact
    # α = 0 is θ itself: the value equals the objective's own loss there
    zero = line(obj, obj.theta0, dirs, axis(-1.0, 1.0, 5))
    assert zero.loss[2] == pytest.approx(float(obj.loss(obj.theta0)), rel=RTOL)


def test_plane_cells_equal_direct_evaluations_with_per_axis_ranges(tiny_case: TinyCase) -> None:
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    dirs = random_directions(obj.layout, obj.theta0, "filter", seed=2)
    a, b = axis(-0.5, 1.0, 7), axis(-1.0, 0.25, 5)
    surface = plane(obj, obj.theta0, dirs, a, b)
    assert surface.loss.shape == (7, 5) and surface.a[-1] == 1.0 and surface.b[0] == -1.0
    ref = reference(tiny_case)
    d1, d2 = torch.as_tensor(dirs.d1), torch.as_tensor(dirs.d2)
    rng = np.random.default_rng(0)
    cells = [(0, 0), (6, 4), (0, 4), (6, 0)] + [tuple(rng.integers((7, 5))) for _ in range(6)]
    for i, j in cells:
        point = obj.theta0 + a[i] * d1 + b[j] * d2
        torch.testing.assert_close(surface.at(i, j), point, rtol=0, atol=1e-15)
        loss, acc = ref(point)
        assert surface.loss[i, j] == pytest.approx(loss, rel=RTOL), (i, j)
        if acc is not None:
            assert surface.accuracy[i, j] == acc


def test_plane_on_train_and_test_splits() -> None:
    g = torch.Generator().manual_seed(0)
    X, Xt = (
        torch.randn(40, 4, generator=g, dtype=torch.float64),
        torch.randn(15, 4, generator=g, dtype=torch.float64),
    )
    y, yt = torch.randint(3, (40,), generator=g), torch.randint(3, (15,), generator=g)
    case = TinyCase(
        "split",
        lambda: torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double(),
        "cross_entropy",
        Dataset("split", X, y, Xt, yt, num_classes=3),
    )
    torch.manual_seed(0)
    model = case.make_model()
    case = replace(case, make_model=lambda: copy.deepcopy(model))
    obj = Objective(case.make_model(), "cross_entropy", case.data, dtype="float64")
    dirs = random_directions(obj.layout, obj.theta0, "filter", seed=0)
    a, b = axis(-1.0, 1.0, 4), axis(-1.0, 1.0, 3)
    surface = plane(obj, obj.theta0, dirs, a, b, test=obj.on(split="test"))
    ref_train, ref_test = reference(case), reference(case, Xt, yt)
    for i, j in ((0, 0), (3, 2), (1, 2)):
        point = surface.at(i, j)
        assert surface.loss[i, j] == pytest.approx(ref_train(point)[0], rel=RTOL)
        assert surface.test_loss[i, j] == pytest.approx(ref_test(point)[0], rel=RTOL)
        assert surface.test_accuracy[i, j] == ref_test(point)[1]


def test_chunked_grid_equals_in_memory_and_resumes_exactly(tmp_path: Path) -> None:
    from losslab.data import digits
    from losslab.models import build_model

    obj = Objective(build_model("mlp:64-8-10", seed=0), "cross_entropy", digits())
    dirs = random_directions(obj.layout, obj.theta0, "filter", seed=0)
    a, b = axis(-1.0, 1.0, 9), axis(-0.5, 0.5, 6)
    memory = plane(obj, obj.theta0, dirs, a, b)
    chunked = plane(obj, obj.theta0, dirs, a, b, chunks=tmp_path / "c", rows_per_chunk=2)
    assert np.array_equal(memory.loss, chunked.loss) and np.array_equal(memory.accuracy, chunked.accuracy)
    pieces = sorted((tmp_path / "c").glob("*.npz"))
    assert len(pieces) == 5  # rows 0-1, 2-3, 4-5, 6-7, 8
    for lost in (pieces[1], pieces[4]):  # as if the process had died before writing them
        lost.unlink()
    resumed = plane(obj, obj.theta0, dirs, a, b, chunks=tmp_path / "c", rows_per_chunk=2)
    assert resumed.points_evaluated == 3 * 6
    assert np.array_equal(resumed.loss, chunked.loss) and np.array_equal(resumed.accuracy, chunked.accuracy)
    # pieces of another grid are never mixed in: new directions wipe the store
    other = random_directions(obj.layout, obj.theta0, "filter", seed=1)
    fresh = plane(obj, obj.theta0, other, a, b, chunks=tmp_path / "c", rows_per_chunk=2)
    assert fresh.points_evaluated == 9 * 6
    with pytest.raises(ValueError, match="another grid"):
        plane(obj, obj.theta0, dirs, a, b, chunks=Chunks(tmp_path / "d", {"grid": "something else"}))
    key = plane_key(obj, obj.theta0, dirs, a, b, rows_per_chunk=3)
    keyed = plane(
        obj,
        obj.theta0,
        dirs,
        a,
        b,
        chunks=Chunks(tmp_path / "e", key),
        rows_per_chunk=3,
        executor=LocalExecutor(),
    )
    assert np.array_equal(keyed.loss, memory.loss)
    in_pieces = plane(obj, obj.theta0, dirs, a, b, executor=LocalExecutor(), rows_per_chunk=4)
    assert np.array_equal(in_pieces.loss, memory.loss)


def test_grid_over_the_memory_budget_runs_in_blocks_without_chunks(tmp_path: Path) -> None:
    # The rule (plane's docstring): points are formed a few at a time inside memory_budget, so a
    # grid whose [P, D] block exceeds it runs in memory too. D = 1,603 float64 numbers per point:
    # 82 points fill 1 MiB.
    model = torch.nn.Sequential(torch.nn.Linear(4, 200), torch.nn.Tanh(), torch.nn.Linear(200, 3)).double()
    data = (torch.randn(30, 4, dtype=torch.float64), torch.randint(3, (30,)))
    obj = Objective(model, "cross_entropy", data, dtype="float64", memory_budget=1 << 20)
    dirs = random_directions(obj.layout, obj.theta0, "filter", seed=0)
    side = int(np.ceil(np.sqrt((1 << 20) / (obj.dim * 8)))) + 1  # side² · D · 8 bytes > 1 MiB
    a = b = axis(-1.0, 1.0, side)
    memory = plane(obj, obj.theta0, dirs, a, b)
    chunked = plane(obj, obj.theta0, dirs, a, b, chunks=tmp_path / "big")
    assert chunked.loss.shape == (side, side) and np.isfinite(chunked.loss).all()
    assert np.array_equal(memory.loss, chunked.loss)
    for i, j in ((0, 0), (side - 1, 3), (side // 2, side - 1)):
        assert memory.loss[i, j] == pytest.approx(float(obj.loss(memory.at(i, j))), rel=RTOL)


def test_wrong_inputs_are_user_errors(tiny_case: TinyCase) -> None:
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    short = Directions(np.zeros(obj.dim - 1), np.zeros(obj.dim - 1), ["given", "given"])
    with pytest.raises(UserError, match=f"the model has {obj.dim} parameters"):
        plane(obj, obj.theta0, short, axis(-1, 1, 3), axis(-1, 1, 3))
    with pytest.raises(UserError, match="parameters"):
        line(obj, obj.theta0, torch.zeros(obj.dim + 3, dtype=torch.float64), axis(-1, 1, 3))
    one = random_directions(obj.layout, obj.theta0, "filter", count=1)
    with pytest.raises(UserError, match="two directions"):
        plane(obj, obj.theta0, one, axis(-1, 1, 3), axis(-1, 1, 3))


def test_trajectory_projection_recovers_plane_coordinates() -> None:
    g = torch.Generator().manual_seed(0)
    D = 60
    theta, d1, d2 = torch.randn(3, D, generator=g, dtype=torch.float64)
    d2 = d2 + 0.4 * d1  # not orthogonal: the projection must still be exact
    off = torch.randn(D, generator=g, dtype=torch.float64)
    basis = torch.linalg.qr(torch.stack([d1, d2], 1)).Q
    off = off - basis @ (basis.T @ off)  # a component orthogonal to the plane
    xs = torch.linspace(-1, 2, 7, dtype=torch.float64)
    ys = torch.linspace(0.5, -1, 7, dtype=torch.float64)
    heights = torch.linspace(0, 3, 7, dtype=torch.float64)
    snapshots = theta + xs[:, None] * d1 + ys[:, None] * d2 + heights[:, None] * off
    traj = project(snapshots.numpy(), theta.numpy(), d1.numpy(), d2.numpy(), steps=np.arange(7) * 10)
    np.testing.assert_allclose(traj.coords, torch.stack([xs, ys], 1).numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(traj.residual, (heights * off.norm()).numpy(), rtol=1e-12, atol=1e-12)
    # and against NumPy's least squares on arbitrary points
    S = torch.randn(5, D, generator=g, dtype=torch.float64).numpy()
    traj = project(S, theta.numpy(), d1.numpy(), d2.numpy())
    A = np.stack([d1.numpy(), d2.numpy()], 1)
    coords, *_ = np.linalg.lstsq(A, (S - theta.numpy()).T, rcond=None)
    np.testing.assert_allclose(traj.coords, coords.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(traj.residual, np.linalg.norm(S - theta.numpy() - (A @ coords).T, axis=1), rtol=1e-10)
    with pytest.raises(UserError, match="parallel"):
        project(S, theta.numpy(), d1.numpy(), 2 * d1.numpy())


def test_projected_trajectory_loss_is_the_loss_on_the_plane(tiny_case: TinyCase) -> None:
    obj = Objective(tiny_case.make_model(), tiny_case.loss, tiny_case.data, dtype="float64")
    dirs = random_directions(obj.layout, obj.theta0, "filter", seed=0)
    g = torch.Generator().manual_seed(1)
    snapshots = obj.theta0 + 0.1 * torch.randn(4, obj.dim, generator=g, dtype=torch.float64)
    traj = project(snapshots.numpy(), obj.theta0.numpy(), dirs.d1, dirs.d2, objective=obj)
    ref = reference(tiny_case)
    for k in range(4):
        x, y = traj.coords[k]
        point = obj.theta0 + x * torch.as_tensor(dirs.d1) + y * torch.as_tensor(dirs.d2)
        assert traj.loss[k] == pytest.approx(ref(point)[0], rel=RTOL)


def test_bump_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    for trial in range(40):
        values = rng.normal(size=rng.integers(2, 30)).cumsum() if trial % 2 else np.sort(rng.normal(size=12))[::-1]
        height, peak, trough = bump(values)
        brute = max(values[k] - values[j] for k in range(len(values)) for j in range(k + 1))
        assert height == pytest.approx(max(brute, 0.0), abs=1e-15)
        assert trough <= peak and values[peak] - values[trough] == pytest.approx(height, abs=1e-15)
    assert bump(np.array([3.0, 2.0, 2.0, 1.0])) == (0.0, 0, 0)


def test_interpolation_endpoints_are_exact_and_mli_holds_on_a_convex_problem() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 5, generator=g, dtype=torch.float64)
    w_star = torch.randn(1, 5, generator=g, dtype=torch.float64)
    y = X @ w_star.T + 0.1 * torch.randn(50, 1, generator=g, dtype=torch.float64)
    obj = Objective(torch.nn.Linear(5, 1, bias=False).double(), "mse", (X, y), dtype="float64")
    solution = torch.linalg.lstsq(X, y).solution.reshape(-1)  # the global minimum of the quadratic
    start = obj.theta0 + 3.0
    curve = interpolate(obj, start, solution, axis(0.0, 1.0, 21), labels=("start", "solution"))
    assert curve.loss[0] == pytest.approx(float(obj.loss(start)), rel=1e-13)
    assert curve.loss[-1] == pytest.approx(float(obj.loss(solution)), rel=1e-13)
    assert curve.monotone and curve.bump <= curve.tolerance
    assert curve.distance == pytest.approx(float((solution - start).norm()), rel=1e-14)
    # past the minimum the loss rises again: α ∈ [1, 1.5] is outside the MLI verdict
    extended = interpolate(obj, start, solution, axis(0.0, 1.5, 31))
    assert extended.monotone and extended.loss[-1] > extended.loss[20]


def test_interpolation_finds_the_bump_of_a_known_curve() -> None:
    # L(w) = cos(3w) on the segment w: 0 → π: minima at w = π/3 and π, a maximum at 2π/3,
    # so the largest bump rises by 2 from α = 1/3 to α = 2/3 (grid points 10 and 20 of 31).
    model = torch.nn.Linear(1, 1, bias=False).double()
    obj = Objective(
        model,
        lambda out, y: torch.cos(3 * out[:, 0]),
        (torch.ones(1, 1), torch.zeros(1, 1)),
        dtype="float64",
    )
    curve = interpolate(
        obj,
        torch.zeros(1, dtype=torch.float64),
        torch.full((1,), torch.pi, dtype=torch.float64),
        axis(0.0, 1.0, 31),
    )
    assert not curve.monotone
    assert curve.bump == pytest.approx(2.0, abs=1e-12)
    assert curve.bump_from == pytest.approx(1 / 3, abs=1e-12) and curve.bump_alpha == pytest.approx(2 / 3, abs=1e-12)
    s = curve.summary()
    assert s["monotone"] is False and s["loss_start"] == pytest.approx(1.0) and s["loss_end"] == pytest.approx(-1.0)


def test_package_doctest() -> None:
    import doctest

    import losslab.surface

    result = doctest.testmod(losslab.surface)
    assert result.attempted >= 5 and result.failed == 0
