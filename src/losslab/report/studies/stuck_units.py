"""Stuck units: dead and stuck fractions per layer over training, against width, and the loss without them."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.connectivity import COLORS
from losslab.report.figures import Figure, draws, new_figure
from losslab.studies.stuck_units import StuckUnitsResult

__all__: list[str] = []


@draws(StuckUnitsResult)
def _over_training(result: StuckUnitsResult) -> list[Figure]:
    W = len(result.points)
    fig, axes = new_figure(4.2 * W, 3.6, ncols=W)
    axes = np.atleast_1d(axes)
    inter = make_subplots(rows=1, cols=W, subplot_titles=[f"width {int(w)}" for w in result.widths])
    for col, (width, point) in enumerate(zip(result.widths, result.points, strict=True)):
        for layer, color in zip(range(point.dead.shape[1]), COLORS * 4, strict=False):
            for name, values, style, dash in (
                ("dead", point.dead[:, layer], "-o", "solid"),
                ("stuck", point.stuck[:, layer], "--", "dash"),
            ):
                label = f"layer {layer + 1} {name}"
                axes[col].plot(point.steps, values, style, color=color, label=label, ms=3)
                inter.add_trace(
                    go.Scatter(
                        x=point.steps,
                        y=values,
                        mode="lines+markers",
                        name=label,
                        line={"color": color, "dash": dash},
                        legendgroup=label,
                        showlegend=col == 0,
                    ),
                    1,
                    col + 1,
                )
        axes[col].set(xlabel="step", ylabel="fraction of units", title=f"width {int(width)}", ylim=(-0.03, 1.03))
        axes[col].grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    inter.update_xaxes(title_text="step")
    inter.update_yaxes(title_text="fraction of units", range=[-0.03, 1.03])
    inter.update_layout(height=400, margin={"t": 40})
    caption = (
        "Per hidden layer: the fraction of ReLU units that output 0 on every training row (dead, solid) and "
        f"whose incoming weights moved ≤ {result.config['stuck_tol']:g} of their norm over the last epoch "
        "(stuck, dashed)."
    )
    return [Figure("over-training", "Dead and stuck units over training", fig, inter, caption)]


@draws(StuckUnitsResult)
def _against_width(result: StuckUnitsResult) -> list[Figure]:
    fig, axes = new_figure(10.0, 3.8, ncols=2)
    inter = make_subplots(rows=1, cols=2, subplot_titles=["dead units at the end", "training loss"])
    widths = result.widths.astype(float)
    layers = result.points[0].dead.shape[1]
    for layer, color in zip(range(layers), COLORS * 4, strict=False):
        fraction = np.array([p.dead[-1, layer] for p in result.points])
        axes[0].plot(widths, fraction, "-o", color=color, label=f"layer {layer + 1}")
        inter.add_trace(go.Scatter(x=widths, y=fraction, mode="lines+markers", name=f"layer {layer + 1}"), 1, 1)
    for name, values, style in (
        ("trained", [p.loss for p in result.points], "-o"),
        ("dead removed", [p.loss_without_dead for p in result.points], "x"),
        ("dead and stuck removed", [p.loss_without_stuck_alive for p in result.points], "--s"),
    ):
        axes[1].plot(widths, values, style, label=name)
        inter.add_trace(go.Scatter(x=widths, y=values, mode="lines+markers", name=name), 1, 2)
    axes[0].set(xlabel="width", ylabel="fraction dead", xscale="log")
    axes[1].set(xlabel="width", ylabel="training loss", xscale="log", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    inter.update_xaxes(type="log", title_text="width")
    inter.update_yaxes(type="log", row=1, col=2)
    inter.update_layout(height=400, margin={"t": 40})
    caption = (
        "Left: fraction of dead units per layer after training, against width. Right: the training loss of the "
        "trained net, of the smaller net with the dead units removed (identical: a checked invariant), and with "
        "the stuck units that still fire removed too."
    )
    return [Figure("width", "Dead units against width, and whether the loss cares", fig, inter, caption)]
