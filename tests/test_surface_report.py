"""Figures of surfaces: orientation (a on x, b on y), log scale, trajectory overlay, curves."""

from __future__ import annotations

import numpy as np
import torch

from losslab.objective import Objective
from losslab.report import figures_of
from losslab.report.surface import _log_scale
from losslab.surface import axis, interpolate, plane, project, random_directions


def _objective() -> Objective:
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(20, 3, generator=g), torch.randint(3, (20,), generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    return Objective(model, "cross_entropy", (X, y), dtype="float64")


def test_plane_figures_put_a_on_x_and_b_on_y_with_the_trajectory() -> None:
    obj = _objective()
    dirs = random_directions(obj.layout, obj.theta0, "filter", seed=0)
    snapshots = obj.theta0.numpy() + 0.05 * np.random.default_rng(0).normal(size=(5, obj.dim))
    traj = project(snapshots, obj.theta0.numpy(), dirs.d1, dirs.d2, objective=obj)
    surface = plane(obj, obj.theta0, dirs, axis(-1.0, 1.0, 5), axis(-0.5, 0.5, 3), trajectory=traj)
    fig, static_3d = figures_of(surface)
    assert fig.slug == "train-surface-filter-filter" and fig.static is not None
    assert static_3d.slug == "train-surface-filter-filter-3d" and static_3d.interactive is None
    z = np.asarray(fig.interactive.data[0].z)
    assert z.shape == (3, 5)  # rows follow b (y), columns follow a (x)
    assert z[2, 1] == surface.loss[1, 2]
    np.testing.assert_array_equal(fig.interactive.data[0].x, surface.a)
    path = fig.interactive.data[1]
    np.testing.assert_array_equal(path.x, traj.coords[:, 0])
    np.testing.assert_array_equal(path.z, traj.loss)
    assert "largest distance off the plane" in fig.caption


def test_log_scale_rule() -> None:
    assert _log_scale("auto", np.array([0.01, 5.0])) and not _log_scale("auto", np.array([0.5, 5.0]))
    assert _log_scale("log", np.array([0.5, 5.0])) and not _log_scale("linear", np.array([1e-4, 5.0]))
    assert not _log_scale("log", np.array([-1.0, 5.0]))  # a log axis needs positive values
    assert not _log_scale("auto", np.array([np.nan, np.inf]))


def test_interpolation_figure_names_the_verdict() -> None:
    model = torch.nn.Linear(1, 1, bias=False).double()
    obj = Objective(
        model, lambda out, y: torch.cos(3 * out[:, 0]), (torch.ones(1, 1), torch.zeros(1, 1)), dtype="float64"
    )
    curve = interpolate(obj, torch.zeros(1), torch.full((1,), torch.pi), axis(0.0, 1.0, 31), labels=("init", "end"))
    (fig,) = figures_of(curve)
    assert "not monotone" in fig.caption and fig.static is not None and len(fig.interactive.data) == 1
