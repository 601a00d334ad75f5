"""GD versus SGD: sharpness against 2/η, the λmax ratio, and the barrier to the GD solution."""

from __future__ import annotations

import matplotlib
import matplotlib.colors
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.figures import Figure, draws, new_figure
from losslab.studies.gd_vs_sgd import GdVsSgdResult

__all__: list[str] = []


@draws(GdVsSgdResult)
def _gd_vs_sgd(result: GdVsSgdResult) -> list[Figure]:
    fig, (ax_loss, ax_sharp, ax_ratio, ax_bar) = new_figure(17, 3.8, ncols=4)
    inter = make_subplots(
        rows=1,
        cols=4,
        subplot_titles=(
            "GD: train loss",
            "GD: sharpness and 2/η",
            "λmax / (2/η) at the end",
            "barrier to the GD solution",
        ),
    )
    gd = [r for r, opt in enumerate(result.optimizer) if opt == "gd"]
    colors = matplotlib.colormaps["tab10"]
    lrs = sorted(set(result.lr.tolist()))
    color_of = {lr: colors(i % 10) for i, lr in enumerate(lrs)}
    hex_of = {lr: matplotlib.colors.to_hex(c) for lr, c in color_of.items()}
    for g, r in enumerate(gd):
        lr = float(result.lr[r])
        keep = np.isfinite(result.loss_curve[r])
        ax_loss.plot(result.record_steps[keep], result.loss_curve[r][keep], color=color_of[lr], label=f"η = {lr:g}")
        inter.add_trace(
            go.Scatter(
                x=result.record_steps[keep],
                y=result.loss_curve[r][keep],
                mode="lines",
                name=f"GD η = {lr:g}",
                line={"color": hex_of[lr]},
            ),
            1,
            1,
        )
        ax_sharp.plot(result.track_steps, result.sharpness[g], color=color_of[lr], label=f"η = {lr:g}")
        ax_sharp.axhline(2 / lr, color=color_of[lr], ls="--", lw=1)
        inter.add_trace(
            go.Scatter(
                x=result.track_steps, y=result.sharpness[g], mode="lines", showlegend=False, line={"color": hex_of[lr]}
            ),
            1,
            2,
        )
        inter.add_hline(y=2 / lr, line_dash="dash", line_color=hex_of[lr], row=1, col=2)
    ax_loss.set(xlabel="step", ylabel="train loss", yscale="log")
    ax_loss.legend(fontsize=8)
    ax_sharp.set(xlabel="step", ylabel="λmax (dashed: 2/η)")
    ax_sharp.set_ylim(bottom=0)
    for lr in lrs:
        rows = [r for r in range(len(result.optimizer)) if result.lr[r] == lr]
        rows.sort(key=lambda r: result.batch_size[r])
        b = result.batch_size[rows]
        ax_ratio.plot(b, result.ratio[rows], "o-", color=color_of[lr], label=f"η = {lr:g}")
        inter.add_trace(
            go.Scatter(
                x=b,
                y=result.ratio[rows],
                mode="lines+markers",
                name=f"η = {lr:g}",
                line={"color": hex_of[lr]},
                showlegend=False,
            ),
            1,
            3,
        )
        sgd = [r for r in rows if result.optimizer[r] == "sgd"]
        if sgd:
            ax_bar.plot(result.batch_size[sgd], result.barrier[sgd], "s-", color=color_of[lr], label=f"η = {lr:g}")
            inter.add_trace(
                go.Scatter(
                    x=result.batch_size[sgd],
                    y=result.barrier[sgd],
                    mode="lines+markers",
                    line={"color": hex_of[lr]},
                    showlegend=False,
                ),
                1,
                4,
            )
    ax_ratio.axhline(1.0, color="k", ls=":", lw=1)
    ax_ratio.set(xscale="log", xlabel="batch size (GD: all rows)", ylabel="λmax · η / 2")
    ax_ratio.legend(fontsize=8)
    ax_bar.set(xscale="log", xlabel="SGD batch size", ylabel="train-loss barrier to GD (same η)")
    for ax, sizes in ((ax_ratio, result.batch_size), (ax_bar, result.batch_size[np.array(result.optimizer) == "sgd"])):
        ticks = sorted({int(b) for b in sizes})  # label the batch sizes run, not log-axis minor ticks
        ax.minorticks_off()
        ax.set_xticks(ticks, [str(b) for b in ticks])
    if ax_bar.lines:
        ax_bar.legend(fontsize=8)
    for ax in (ax_loss, ax_sharp, ax_ratio, ax_bar):
        ax.grid(alpha=0.3)
    inter.update_xaxes(type="log", row=1, col=3)
    inter.update_xaxes(type="log", row=1, col=4)
    inter.update_yaxes(type="log", row=1, col=1)
    inter.update_layout(height=400, margin={"t": 40})
    cfg = result.config
    caption = (
        f"{cfg.get('model')} on {result.n_train} rows of {cfg.get('data')}, loss {cfg.get('loss')} "
        "(½‖f − y‖² averaged over examples, Cohen et al.'s 0.5·Σ/n), "
        f"{cfg.get('steps')} steps per run from one initialization. GD's λmax every "
        f"{cfg.get('track_every')} steps; 1 on the ratio axis is the stability threshold λmax = 2/η. "
        "Barrier: excess train loss on the straight line from the GD solution with the same η."
    )
    return [Figure("gd-vs-sgd", "GD versus SGD: sharpness against 2/η, and where they end", fig, inter, caption)]
