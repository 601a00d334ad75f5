"""Figures of certified optima: scaling of the 3-node MILP, SGD gaps, exact vs SGD boundaries."""

from __future__ import annotations

from typing import Any

import matplotlib.colors
import matplotlib.lines
import numpy as np
import plotly.graph_objects as go
from matplotlib.colors import ListedColormap
from matplotlib.ticker import MaxNLocator

from losslab.exact import (
    PerceptronResult,
    RelaxationResult,
    Relu2Result,
    ScalingResult,
    SgdGapResult,
    ThreeNodeResult,
    relu2_outputs,
)
from losslab.report.figures import Figure, draws, new_figure

__all__: list[str] = []

_YES, _NO, _OPEN = "#1b7837", "#b2182b", "#878787"


@draws(ScalingResult)
def _scaling(result: ScalingResult) -> list[Figure]:
    x = result.elements if result.sweep == "elements" else result.subsets
    label = "elements n" if result.sweep == "elements" else "subsets m"
    fig, ax = new_figure(7, 4.2)
    inter = go.Figure()
    groups = (
        (1, "trainable (MILP found a network)", _YES, "o"),
        (0, "not trainable (MILP proved none)", _NO, "s"),
        (-1, "no proof (stopped)", _OPEN, "x"),
    )
    for value, name, colour, marker in groups:
        pick = result.trainable == value
        if pick.any():
            ax.scatter(x[pick], result.milp_seconds[pick], c=colour, marker=marker, label=name, zorder=3)
            inter.add_trace(
                go.Scatter(
                    x=x[pick],
                    y=result.milp_seconds[pick],
                    mode="markers",
                    name=name,
                    marker={"color": colour},
                    text=[f"seed {s}" for s in result.seeds[pick]],
                )
            )
    brute = np.isfinite(result.brute_seconds)
    if brute.any():
        ax.scatter(
            x[brute],
            result.brute_seconds[brute],
            facecolors="none",
            edgecolors="k",
            marker="^",
            label="brute-force set splitting",
            zorder=2,
        )
        inter.add_trace(
            go.Scatter(
                x=x[brute],
                y=result.brute_seconds[brute],
                mode="markers",
                name="brute-force set splitting",
                marker={"symbol": "triangle-up-open"},
            )
        )
    ax.set(xlabel=label, ylabel="seconds to certify", yscale="log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    relaxed = (result.trainable == 1) & np.isfinite(result.relaxed) if result.relax_seeds else None
    if relaxed is not None and relaxed.any():
        twin = ax.twinx()
        twin.plot(x[relaxed], result.relaxed[relaxed], "d", color="C4", alpha=0.7)
        twin.set(ylabel=f"relaxation seeds reaching 0 errors (of {result.relax_seeds})", ylim=(-0.05, 1.05))
        twin.yaxis.label.set_color("C4")
        inter.add_trace(
            go.Scatter(
                x=x[relaxed],
                y=result.relaxed[relaxed],
                mode="markers",
                name="sigmoid relaxation: fraction of seeds at 0 errors",
                yaxis="y2",
                marker={"symbol": "diamond"},
            )
        )
        inter.update_layout(yaxis2={"overlaying": "y", "side": "right", "range": [-0.05, 1.05]})
    inter.update_layout(
        xaxis_title=label,
        yaxis_title="seconds to certify",
        yaxis_type="log",
        height=420,
        margin={"t": 30},
    )
    caption = (
        f"{len(x)} of {result.planned} planned {result.kind} instances; stopped: {result.stopped} "
        f"({result.note}); {result.spent_seconds:.1f} of {result.budget_seconds:g} s spent."
    )
    return [Figure("scaling", f"Time to certify the 3-node network vs {label}", fig, inter, caption)]


@draws(ThreeNodeResult)
def _three_node(result: ThreeNodeResult) -> list[Figure]:
    S = result.subsets
    fig, ax = new_figure(7, 1.2 + 0.22 * len(S))
    # 0: not in the subset (white); 1 / 2: a member of colour 0 / 1 (grey when no splitting).
    shown = S.astype(float)
    if len(result.splitting):
        shown = np.where(S > 0, 1.0 + result.splitting[None, :], 0.0)
    elif len(result.core):  # the proof: the unsplittable core's rows in red, the other subsets grey
        in_core = np.isin(np.arange(len(S)), result.core)
        shown = np.where(S > 0, 1.0 + in_core[:, None], 0.0)
    if len(result.splitting):
        palette = ["white", "#2166ac", "#b2182b"]
    else:
        palette = ["white", "#bdbdbd", "#b2182b"] if len(result.core) else ["white", "#636363", "#636363"]
    ax.imshow(shown, aspect="auto", cmap=ListedColormap(palette), vmin=0, vmax=2, interpolation="nearest")
    ax.set(xlabel="element", ylabel="subset", xticks=range(result.elements))
    answer = "trainable" if result.decision.trainable else "not trainable"
    title = f"Instance n = {result.elements}, m = {len(S)} ({result.kind}): {answer}"
    scale = [
        [0.0, palette[0]],
        [0.33, palette[0]],
        [0.34, palette[1]],
        [0.66, palette[1]],
        [0.67, palette[2]],
        [1.0, palette[2]],
    ]
    inter = go.Figure(go.Heatmap(z=shown, zmin=0, zmax=2, colorscale=scale, showscale=False))
    inter.update_layout(xaxis_title="element", yaxis_title="subset", height=200 + 18 * len(S), margin={"t": 30})
    caption = (
        "Rows are subsets, columns elements; colours show the splitting read off the trained "
        "network "
        "(unit 1's rejections)."
        if len(result.splitting)
        else (
            f"No splitting exists. Red rows: {len(result.core)} subsets that no colouring splits "
            f"(checked: {result.core_check}); grey: the others."
            if len(result.core)
            else "No splitting exists: nothing to colour."
        )
    )
    figures = [Figure("instance", title, fig, inter, caption)]
    if result.relaxation is not None:
        figures += _relaxation(result.relaxation)
    return figures


@draws(RelaxationResult)
def _relaxation(result: RelaxationResult) -> list[Figure]:
    errors = result.hard_errors
    bins = np.arange(errors.max() + 2) - 0.5
    fig, ax = new_figure(6, 3.5)
    ax.hist(errors, bins=bins, color=_YES if result.trainable else _NO)
    ax.set(xlabel="errors of the thresholded network", ylabel="seeds")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    inter = go.Figure(go.Histogram(x=errors, xbins={"start": -0.5, "size": 1}))
    inter.update_layout(xaxis_title="errors of the thresholded network", yaxis_title="seeds", height=360)
    summary = result.summary()
    caption = (
        f"{summary['seeds']} seeds of gradient descent on the sigmoid relaxation; "
        f"{100 * summary['solved_final']:.0f} % end with zero errors; the MILP says the points are "
        f"{'' if result.trainable else 'not '}separable by the network."
    )
    return [Figure("relaxation", "Sigmoid relaxation: errors per seed", fig, inter, caption)]


@draws(PerceptronResult)
def _perceptron(result: PerceptronResult) -> list[Figure]:
    X, y = result.X, result.y
    fig, ax = new_figure(6, 5)
    inter = go.Figure()
    if X.shape[1] != 2:
        s = 2.0 * y - 1.0
        w, b = (
            (result.w, result.b)
            if result.separable
            else ((result.fewest.w, result.fewest.b) if result.fewest is not None else (result.w, result.b))
        )
        margins = np.sort(s * (X @ w + b))
        ax.plot(margins, ".")
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xlabel="point (sorted)", ylabel="s·(w·x + b)")
        inter.add_trace(go.Scatter(y=margins, mode="markers"))
        return [
            Figure(
                "margins",
                "Signed margins of the unit",
                fig,
                inter,
                "Points below zero are misclassified by the unit shown.",
            )
        ]
    for label, colour, marker in ((0, _NO, "s"), (1, _YES, "o")):
        pick = y == label
        ax.scatter(X[pick, 0], X[pick, 1], c=colour, marker=marker, label=f"label {label}", zorder=3)
        inter.add_trace(
            go.Scatter(
                x=X[pick, 0],
                y=X[pick, 1],
                mode="markers",
                name=f"label {label}",
                marker={"color": colour},
            )
        )
    lo, hi = X.min(0), X.max(0)
    pad = 0.1 * np.maximum(hi - lo, 1e-9)
    lo, hi = lo - pad, hi + pad
    lines = []
    if result.separable:
        lines.append(("max-margin unit", result.w, result.b, "k"))
    else:
        support = result.certificate > 0
        ax.scatter(
            X[support, 0],
            X[support, 1],
            s=40 + 600 * result.certificate[support],
            facecolors="none",
            edgecolors="k",
            label="certificate support (size ∝ λ)",
            zorder=2,
        )
        inter.add_trace(
            go.Scatter(
                x=X[support, 0],
                y=X[support, 1],
                mode="markers",
                name="certificate support",
                marker={"size": 8 + 40 * result.certificate[support], "symbol": "circle-open"},
            )
        )
    if result.fewest is not None and not result.separable:
        lines.append((f"fewest errors ({result.fewest.errors})", result.fewest.w, result.fewest.b, "C0"))
    for name, w, b, colour in lines:
        xs = np.linspace(lo[0], hi[0], 2)
        if abs(w[1]) > 1e-12:
            ys = -(w[0] * xs + b) / w[1]
        else:
            xs, ys = np.full(2, -b / w[0]), np.array([lo[1], hi[1]])
        ax.plot(xs, ys, color=colour, label=name)
        inter.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name))
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xlabel="x₁", ylabel="x₂")
    ax.legend(fontsize=8)
    inter.update_layout(xaxis_range=[lo[0], hi[0]], yaxis_range=[lo[1], hi[1]], height=460)
    caption = (
        f"Separable with ℓ1 margin {result.margin:.3g}."
        if result.separable
        else "Not separable: the circled points carry a Gordan certificate (convex combinations "
        "of the two classes coincide), checked "
        f"{'exactly' if result.certificate_exact else 'in floating point'}."
    )
    return [Figure("separation", "One threshold unit", fig, inter, caption)]


@draws(Relu2Result)
def _relu2(result: Relu2Result) -> list[Figure]:
    h = result.history
    fig, ax = new_figure(6, 3.6)
    rounds = np.arange(len(h["upper"]))
    finite = np.isfinite(h["lower"])
    ax.plot(rounds, h["upper"], "-o", ms=3, label="upper bound (recovered network)")
    ax.plot(rounds[finite], h["lower"][finite], "-s", ms=3, label="lower bound (dual certificate)")
    ax.set(xlabel="column-generation round", ylabel="objective", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    inter = go.Figure(
        [
            go.Scatter(x=rounds, y=h["upper"], name="upper bound"),
            go.Scatter(x=rounds[finite], y=h["lower"][finite], name="lower bound"),
        ]
    )
    inter.update_layout(xaxis_title="round", yaxis_title="objective", yaxis_type="log", height=360)
    scope = "all" if result.patterns == "all" else result.patterns
    caption = (
        f"Patterns: {scope} ({result.pattern_count:,}); "
        f"{'certified' if result.certified else 'not certified'}:"
        f" optimum {result.optimum:.8g}, gap {result.gap:.2e}; width m* = {result.width}."
    )
    figures = [Figure("bounds", "Certified optimum: bounds per round", fig, inter, caption)]
    if result.X.shape[1] in (1, 2):
        figures.append(_functions(result))
    if result.sgd is not None:
        figures += _sgd_gaps(result.sgd)
    return figures


def _functions(result: Relu2Result) -> Figure:
    """Exact vs SGD networks: curves for 1-D inputs, level sets at mid-range for 2-D."""
    X, y, sgd = result.X, result.y, result.sgd
    order = np.argsort(sgd.objectives) if sgd is not None else np.zeros(0, dtype=int)
    picks = [("best SGD seed", order[0]), ("worst SGD seed", order[-1])] if len(order) else []
    lo, hi = X.min(0), X.max(0)
    pad = 0.1 * np.maximum(hi - lo, 1e-9)
    fig, ax = new_figure(6, 5 if X.shape[1] == 2 else 3.6)
    inter = go.Figure()
    if X.shape[1] == 1:
        grid = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 400)[:, None]
        ax.plot(X[:, 0], y, ".k", label="data")
        ax.plot(
            grid[:, 0],
            relu2_outputs(result.U, result.alpha, grid),
            "k",
            lw=2,
            label="global optimum",
        )
        inter.add_trace(go.Scatter(x=X[:, 0], y=y, mode="markers", name="data"))
        inter.add_trace(go.Scatter(x=grid[:, 0], y=relu2_outputs(result.U, result.alpha, grid), name="global optimum"))
        for name, k in picks:
            U, alpha = sgd.network(k)
            ax.plot(grid[:, 0], relu2_outputs(U, alpha, grid), lw=1, label=name)
            inter.add_trace(go.Scatter(x=grid[:, 0], y=relu2_outputs(U, alpha, grid), name=name))
        ax.set(xlabel="x", ylabel="f(x)")
        ax.legend(fontsize=8)
        return Figure(
            "functions",
            "Global optimum vs SGD",
            fig,
            inter,
            "The certified network and SGD's best and worst.",
        )
    g0 = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 160)
    g1 = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 160)
    grid = np.stack(np.meshgrid(g0, g1), -1).reshape(-1, 2)
    level = 0.5 * (y.min() + y.max())
    exact = relu2_outputs(result.U, result.alpha, grid).reshape(len(g1), len(g0))
    # One colour scale for the shading and the data, centred on the level set, so a point's colour and the
    # shading under it agree exactly when the certified network fits it.
    span = float(max(np.abs(exact - level).max(), np.abs(y - level).max(), 1e-12))
    norm = matplotlib.colors.Normalize(level - span, level + span)
    shading = ax.contourf(g0, g1, exact, levels=20, cmap="RdBu", norm=norm, alpha=0.35)
    fig.colorbar(shading, ax=ax, label="f(x) of the certified network (shading) and label y (points)")
    handles = [matplotlib.lines.Line2D([], [], color="k", lw=2, label=f"global optimum, f = {level:.3g}")]
    if exact.min() < level < exact.max():  # matplotlib warns about a level the surface never reaches
        ax.contour(g0, g1, exact, levels=[level], colors="k", linewidths=2)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu", norm=norm, edgecolors="k", s=25, zorder=3)
    handles.append(matplotlib.lines.Line2D([], [], ls="", marker="o", mfc="w", mec="k", label="data (fill: label y)"))
    inter.add_trace(
        go.Contour(
            x=g0,
            y=g1,
            z=exact,
            colorscale="RdBu",
            opacity=0.5,
            name="global optimum",
            contours={"showlabels": False},
        )
    )
    inter.add_trace(
        go.Scatter(
            x=X[:, 0],
            y=X[:, 1],
            mode="markers",
            marker={"color": y, "colorscale": "RdBu", "line": {"width": 1}},
            name="data",
        )
    )
    styles = (("--", "C1", "orange", "dash"), (":", "C4", "purple", "dot"))
    described = []
    for (name, k), (style, colour, colour_name, dash) in zip(picks, styles, strict=False):
        U, alpha = sgd.network(k)
        values = relu2_outputs(U, alpha, grid).reshape(len(g1), len(g0))
        if values.min() < level < values.max():
            ax.contour(g0, g1, values, levels=[level], colors=colour, linestyles=style)
            handles.append(matplotlib.lines.Line2D([], [], color=colour, ls=style, label=name))
            described.append(f"the {name} ({'dashed' if style == '--' else 'dotted'} {colour_name})")
        else:
            described.append(f"the {name} (its output never crosses f = {level:.3g}: no line)")
        inter.add_trace(
            go.Contour(
                x=g0,
                y=g1,
                z=values,
                contours={"start": level, "end": level, "coloring": "lines"},
                line={"color": matplotlib.colors.to_hex(colour), "dash": dash, "width": 2},
                colorscale=[[0, matplotlib.colors.to_hex(colour)], [1, matplotlib.colors.to_hex(colour)]],
                showscale=False,
                showlegend=True,
                name=name,
            )
        )
    ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.85)
    ax.set_box_aspect(1)  # both inputs are on the same footing: a square panel, not a 3:1 strip
    ax.set(xlabel="x₁", ylabel="x₂")
    caption = (
        f"Level set f = {level:.3g} of the certified network (solid black)"
        + (" and of " + " and ".join(described) if described else "")
        + "; shading (blue high, red low, colour bar) is the certified network's output, points are coloured by"
        " their label on the same scale."
    )
    return Figure("boundaries", "Decision boundaries: global optimum vs SGD", fig, inter, caption)


@draws(SgdGapResult)
def _sgd_gaps(result: SgdGapResult) -> list[Figure]:
    relative = result.gaps / max(abs(result.optimum), 1e-300)
    floor = 1e-12
    shown = np.maximum(relative, floor)
    fig, ax = new_figure(6, 3.6)
    edges = np.logspace(np.log10(shown.min()) - 0.1, np.log10(shown.max()) + 0.1, 20)
    ax.hist(shown, bins=edges, color="C0")
    ax.set(xscale="log", xlabel="(SGD objective − global optimum) / global optimum", ylabel="seeds")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    inter = go.Figure(go.Histogram(x=np.log10(shown), nbinsx=20))
    inter.update_layout(xaxis_title="log10 relative gap", yaxis_title="seeds", height=360)
    summary: dict[str, Any] = result.summary()
    caption = (
        f"{summary['seeds']} seeds, width {result.width}, {result.config.get('optimizer')} "
        f"with weight decay; median relative gap {summary['relative_gap_median']:.2e}; "
        "seeds below the certified lower bound: "
        f"{result.below_bound}."
    )
    return [Figure("sgd-gaps", "Gap of gradient training to the certified optimum", fig, inter, caption)]
