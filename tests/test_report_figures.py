"""Figure defects of issue 16, each checked on the figure's data: legends, colour bars, markers, ticks, titles."""

from __future__ import annotations

import re
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
    fig, static_3d = figures_of(surface)
    assert static_3d.static.axes[0].name == "3d"
    static_3d.static.canvas.draw()  # tick labels exist once drawn
    zticks = [t.get_text() for t in static_3d.static.axes[0].get_zticklabels()]
    assert zticks and all(len(t) <= 6 for t in zticks), zticks  # short plain numbers, no offset text
    ax = fig.static.axes[0]
    (marker,) = [line for line in ax.get_lines() if line.get_label().startswith("start")]
    assert marker.get_label() == f"start (projection; {traj.residual[0]:.3g} off the plane)"
    assert marker.get_markerfacecolor() == "none"  # hollow: it is not a point of the plane
    np.testing.assert_allclose(marker.get_xydata()[0], traj.coords[0])
    assert "off the plane" in fig.interactive.data[1].name


def _saddle(bound_low: float, bound_high: float):  # noqa: ANN202
    from losslab.curvature.saddle import SaddleIndex

    grid = np.linspace(-0.05, 1.5, 200)
    cdf = np.stack([np.clip((grid + 0.02) / 1.5, 0, 1), np.clip((grid + 0.021) / 1.5, 0, 1)])
    return SaddleIndex(
        tau=0.0014, fraction=0.11, fraction_low=0.09, fraction_high=0.13, bound_low=bound_low, bound_high=bound_high,
        confidence=0.95, count_estimate=2000.0, count_lower=5, count=None, lambda_min=-0.0147,
        lambda_min_residual=1e-6, lambda_max=1.41, ratio=0.0104, verdict="saddle", dim=17610, grid=grid, cdf=cdf,
        hvps=100, wall_seconds=1.0,
    )  # fmt: skip


def test_the_saddle_intervals_sit_at_minus_tau_and_a_0_1_bound_is_not_painted() -> None:
    (fig,) = figures_of(_saddle(0.0, 1.0))
    ax = fig.static.axes[0]
    assert len(ax.patches) == 0, "no band across the panel"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert not any("CMS" in label for label in labels)
    assert "not bounded by the quadrature" in fig.caption and "exact count not computed" in fig.caption
    (point,) = [t for t in fig.interactive.data if t.name.startswith("fraction")]
    assert point.x == (-0.0014,) and point.y == (0.11,)
    (fig,) = figures_of(_saddle(0.08, 0.15))
    labels = [t.get_text() for t in fig.static.axes[0].get_legend().get_texts()]
    assert any("CMS" in label for label in labels) and "[0.08, 0.15]" in fig.caption


def _eigenpairs(converged: list[bool]):  # noqa: ANN202
    from losslab.curvature.lanczos import Eigenpairs

    k = len(converged)
    return Eigenpairs(
        eigenvalues=np.array([2e-5, 1e-5, 5e-6][:k]), vectors=np.zeros((k, 3)), residuals=np.full(k, 1e-9),
        converged=np.array(converged), error_estimates=np.zeros(k), which="top", tol=1e-5, norm_estimate=2e-5,
        hvps=10, steps=10, restarts=0, residual_source="product", operator="hessian", wall_seconds=0.1,
    )  # fmt: skip


def test_eigenvalue_ticks_are_powers_of_ten_and_red_is_named_only_when_drawn() -> None:
    (fig,) = figures_of(_eigenpairs([True, True, True]))
    assert not re.search(r"\bred\b", fig.caption)
    layout = fig.interactive.layout
    assert layout.yaxis.exponentformat == "power" and layout.yaxis2.exponentformat == "power"  # not "10µ"
    (fig,) = figures_of(_eigenpairs([True, False, True]))
    assert "red bars: not converged" in fig.caption
    assert list(fig.interactive.data[1].marker.color).count("#d62728") == 1


def _restarts(barriers: dict[str, tuple[float, float]]):  # noqa: ANN202
    """A restarts result per problem name → (target loss, largest barrier), barriers spread over that range."""
    from losslab.studies.restarts import RestartsProblemResult, RestartsResult

    problems = []
    for seed, (name, (target, top)) in enumerate(barriers.items()):
        rng = np.random.default_rng(seed)
        k, pairs = 8, np.array([[i, i + 1] for i in range(6)])
        naive = top * np.concatenate([[1.0, -0.05], rng.uniform(0.0, 1.0, 4)])  # a barrier can be negative
        nan, loss = np.full(k, np.nan), rng.uniform(0, 2 * target, k)
        spec = {"model": "m", "data": "d", "optimizer": "gd", "lr": 0.1, "steps": 10}
        problems.append(
            RestartsProblemResult(
                name,
                spec,
                np.arange(k),
                loss,
                nan,
                nan,
                nan,
                nan,
                np.zeros((k, 3)),
                np.full(k, 10),
                loss <= target,
                target,
                pairs,
                np.linspace(0, 1, 5),
                naive,
                naive * rng.uniform(0, 1, 6),
                np.zeros((6, 5)),
                np.zeros((6, 5)),
            )  # fmt: skip
        )
    return RestartsResult(problems, {"align": "weight"})


def test_restarts_barrier_tick_labels_do_not_overlap() -> None:
    # the demo's three problems: XOR (barriers ~1, target 0.05), the teacher (1e-3, target 1e-6), digits (all
    # barriers below the target 0.1: symlog's linear part only), and a panel spanning twelve decades
    result = _restarts({"xor": (0.05, 1.0), "teacher": (1e-6, 1e-3), "digits": (0.1, 0.035), "wide": (1e-12, 5.0)})
    fig = figures_of(result)[1].static
    fig.canvas.draw()
    renderer = fig._get_renderer()  # the Agg renderer the PNG is drawn with
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            boxes = [t.get_window_extent(renderer).padded(2) for t in labels]  # 2 px apart at least
            assert len(labels) >= 3, (ax.get_title(), [t.get_text() for t in labels])
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    assert not boxes[i].overlaps(boxes[j]), (ax.get_title(), labels[i].get_text(), labels[j].get_text())
            assert all(len(t.get_text()) <= 14 for t in labels), [t.get_text() for t in labels]  # no 1.68151×10⁻³


def test_a_log_scale_3d_surface_has_decade_ticks_in_both_views() -> None:
    import dataclasses

    import torch

    from losslab.objective import Objective
    from losslab.surface import axis, plane, random_directions

    g = torch.Generator().manual_seed(0)
    obj = Objective(torch.nn.Linear(3, 2), "cross_entropy", (torch.randn(8, 3, generator=g), torch.arange(8) % 2))
    computed = plane(obj, obj.theta0, random_directions(obj.layout, obj.theta0, "random", seed=0), axis(-1, 1, 9),
                     axis(-1, 1, 7))  # fmt: skip
    a, b = computed.a, computed.b
    loss = 10.0 ** (-3 + 3 * (a[:, None] ** 2 + b[None, :] ** 2) / 2)  # 1e-3 … 1: log under 'auto'
    contour, static_3d = figures_of(dataclasses.replace(computed, loss=loss, accuracy=None))
    scene = contour.interactive.layout.scene
    assert scene.zaxis.type != "log"  # plotly's 3-D log axis labels every 2 and 5 between decades
    assert list(scene.zaxis.tickvals) == [-3, -2, -1, 0]
    assert list(scene.zaxis.ticktext) == ["10<sup>-3</sup>", "10<sup>-2</sup>", "10<sup>-1</sup>", "10<sup>0</sup>"]
    (trace,) = contour.interactive.data
    np.testing.assert_allclose(np.asarray(trace.z), np.log10(loss.T))
    np.testing.assert_allclose(np.asarray(trace.customdata), loss.T)  # hover shows the loss itself
    assert list(trace.colorbar.tickvals) == [-3, -2, -1, 0]
    static_3d.static.canvas.draw()
    ax = static_3d.static.axes[0]
    visible = [t.get_text() for t in ax.get_zticklabels() if t.get_text()]
    assert visible == ["$10^{-3}$", "$10^{-2}$", "$10^{-1}$", "$10^{0}$"]
    assert ax.get_zlabel() == "train loss (log scale)"


def test_interactive_figures_never_use_si_prefixes() -> None:
    import json

    import plotly.graph_objects as go

    from losslab.report.figures import Figure
    from losslab.report.html import Section, render_report

    small = go.Figure(go.Scatter(x=[1e-5, 2e-5], y=[1e-6, 3e-6], marker={"color": [1e-5, 2e-5], "showscale": True}))
    surface = go.Figure(go.Surface(z=[[1e-5, 2e-5], [3e-5, 4e-5]]))
    own = go.Figure(go.Scatter(y=[1e-5, 2e-5]), layout={"yaxis": {"exponentformat": "e"}})
    figs = [("x", Figure(name, name, None, f)) for name, f in (("small", small), ("surface", surface), ("own", own))]
    text = render_report("r", [Section("s", {"status": "complete"}, {}, figs)])
    (template,) = json.loads(re.search(r"id='plot-templates'>(.*?)</script>", text).group(1))
    layout = template["layout"]
    assert layout["xaxis"]["exponentformat"] == layout["yaxis"]["exponentformat"] == "power"
    assert {layout["scene"][a]["exponentformat"] for a in ("xaxis", "yaxis", "zaxis")} == {"power"}
    assert template["data"]["surface"][0]["colorbar"]["exponentformat"] == "power"
    assert template["data"]["scatter"][0]["marker"]["colorbar"]["exponentformat"] == "power"
    specs = [json.loads(m.replace("<\\/", "</")) for m in re.findall(r"-spec'>(.*?)</script>", text)]
    assert specs[2]["figure"]["layout"]["yaxis"]["exponentformat"] == "e"  # a figure's own choice wins
