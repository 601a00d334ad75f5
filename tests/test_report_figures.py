"""Figure defects of issue 16, each checked on the figure's data: legends, colour bars, markers, ticks, titles."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from losslab.exact.relu2 import Relu2Result
from losslab.report import figures_of
from losslab.report.exact import _functions


def _relu2() -> Relu2Result:
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(40, 2)) * np.array([3.0, 1.0])  # one input spans 3x the other
    y = np.sign(X[:, 0] * X[:, 1])
    U = np.array([[1.0, 0.5, 0.0], [-1.0, 0.5, 0.1]])
    alpha = np.array([1.0, -1.0])
    other = (np.array([[0.5, 1.0, 0.0], [1.0, -1.0, 0.0]]), np.array([1.0, -0.5]))
    sgd = SimpleNamespace(objectives=np.array([0.5, 0.9]), network=lambda k: other)
    return Relu2Result(
        lam=0.01, patterns="all", pattern_count=10, working_set=4, rounds=2, optimum=0.3, lower_bound=0.3, gap=0.0,
        tol=1e-6, certified=True, convex_value=0.3, solver_status="optimal", solver_gap=0.0, U=U, alpha=alpha,
        seconds=0.1, X=X, y=y, history={}, sgd=sgd,
    )  # fmt: skip


def test_relu2_boundaries_have_a_legend_a_colour_bar_a_square_panel_and_a_true_caption() -> None:
    fig = _functions(_relu2())
    ax, *others = fig.static.axes
    assert len(others) == 1 and "certified network" in others[0].get_ylabel()  # the colour bar, labelled
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("global optimum") and "data (fill: label y)" in labels
    assert "best SGD seed" in labels and "worst SGD seed" in labels
    assert ax.get_box_aspect() == 1
    # the caption names only colours the figure draws
    assert "orange" in fig.caption and "purple" in fig.caption and "solid black" in fig.caption
    legend_colours = {line.get_color() for line in ax.get_legend().get_lines()}
    assert {"C1", "C4", "k"} <= legend_colours
    names = [t.name for t in fig.interactive.data if t.showlegend]
    assert names == ["best SGD seed", "worst SGD seed"]


def test_an_off_plane_start_is_drawn_as_a_hollow_projection_with_its_distance() -> None:
    import torch

    from losslab.objective import Objective
    from losslab.surface import axis, plane, project, random_directions

    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(20, 3, generator=g), torch.randint(3, (20,), generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    obj = Objective(model, "cross_entropy", (X, y), dtype="float64")
    dirs = random_directions(obj.layout, obj.theta0, "filter", seed=0)
    theta = obj.theta0.numpy()
    start = theta + 5.0 * np.random.default_rng(1).normal(size=obj.dim) / np.sqrt(obj.dim)  # ~5 off the plane
    traj = project(np.stack([start, theta]), theta, dirs.d1, dirs.d2, objective=obj)
    assert traj.residual[0] > 1.0
    surface = plane(obj, obj.theta0, dirs, axis(-1.0, 1.0, 5), axis(-1.0, 1.0, 5), trajectory=traj)
    (fig,) = figures_of(surface)
    ax = fig.static.axes[0]
    (marker,) = [line for line in ax.get_lines() if line.get_label().startswith("start")]
    assert marker.get_label() == f"start (projection; {traj.residual[0]:.3g} off the plane)"
    assert marker.get_markerfacecolor() == "none"  # hollow: it is not a point of the plane
    np.testing.assert_allclose(marker.get_xydata()[0], traj.coords[0])
    assert "off the plane" in fig.interactive.data[1].name
