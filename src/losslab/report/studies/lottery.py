"""Lottery tickets: accuracy vs kept fraction per scheme and scope, and the instability of the sparse copies."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.connectivity import COLORS
from losslab.report.figures import Figure, draws, new_figure
from losslab.studies.lottery import LotteryResult

__all__: list[str] = []


def _schemes(result: LotteryResult, s: int) -> dict[str, np.ndarray]:
    """The accuracy [Q] of every scheme in scope ``s`` (tickets at their largest rewind step and at 0)."""
    last = len(result.ks) - 1
    out = {
        f"ticket, rewind k={int(result.ks[0])}": result.ticket[s, :, 0],
        "random re-init, same mask": result.reinit[s],
        "random mask": result.random_mask[s],
        "pruned, no retraining": result.pruned[s],
        f"iterative (IMP), k={int(result.ks[last])}": result.imp[s, last],
    }
    if last > 0:
        out[f"ticket, rewind k={int(result.ks[last])}"] = result.ticket[s, :, last]
    return out


@draws(LotteryResult)
def _accuracy(result: LotteryResult) -> list[Figure]:
    S = len(result.scopes)
    fig, axes = new_figure(5.0 * S, 3.9, ncols=S)
    axes = np.atleast_1d(axes)
    inter = make_subplots(rows=1, cols=S, subplot_titles=[f"{scope} pruning" for scope in result.scopes])
    percent = 100 * result.keeps
    for s, scope in enumerate(result.scopes):
        for (name, acc), color in zip(_schemes(result, s).items(), COLORS * 2, strict=False):
            dash = "dot" if "no retraining" in name else "solid"
            axes[s].plot(percent, acc, "o:" if dash == "dot" else "-o", color=color, label=name, ms=4)
            inter.add_trace(
                go.Scatter(
                    x=percent,
                    y=acc,
                    mode="lines+markers",
                    name=name,
                    line={"color": color, "dash": dash},
                    legendgroup=name,
                    showlegend=s == 0,
                ),
                1,
                s + 1,
            )
        axes[s].axhline(result.dense, color="k", lw=0.8, ls="--", label="dense")
        inter.add_hline(y=result.dense, line={"color": "black", "dash": "dash", "width": 1}, row=1, col=s + 1)
        axes[s].set(xlabel="weights kept (%)", ylabel="test accuracy", xscale="log", title=f"{scope} pruning")
        axes[s].set_xticks(percent, labels=[f"{p:.3g}" for p in percent], minor=False)
        axes[s].minorticks_off()
        axes[s].invert_xaxis()
        axes[s].grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    inter.update_xaxes(type="log", autorange="reversed", title_text="weights kept (%)")
    inter.update_yaxes(title_text="test accuracy")
    inter.update_layout(height=420, margin={"t": 40})
    caption = (
        f"Test accuracy after {result.total_steps} steps of masked training (pruned weights held at 0) "
        f"against the fraction of the {result.prunable} weight-matrix entries kept. Tickets: the "
        "trained net's largest weights rewound to step k (Frankle & Carbin 2019; Frankle et al. 2020); "
        "random re-init: the same mask on a fresh initialization; random mask: the same per-layer counts "
        "at random positions; dashed line: the dense network."
    )
    return [Figure("accuracy", "Lottery tickets: accuracy vs weights kept", fig, inter, caption)]


@draws(LotteryResult)
def _instability(result: LotteryResult) -> list[Figure]:
    if "global" not in result.scopes:
        return []
    s = result.scopes.index("global")
    fig, axes = new_figure(10.0, 3.8, ncols=2)
    inter = make_subplots(rows=1, cols=2, subplot_titles=["instability vs rewind step", "ticket accuracy vs rewind"])
    ks = result.ks.astype(float)
    rows = [("dense", result.dense_barrier, None)] + [
        (f"{100 * q:g} % kept", result.barrier[s, i], result.ticket[s, i]) for i, q in enumerate(result.keeps)
    ]
    shades = np.linspace(0.3, 1.0, len(rows))
    for (name, heights, acc), shade in zip(rows, shades, strict=True):
        color = (0.1, 0.3, 0.8, float(shade)) if acc is not None else (0.0, 0.0, 0.0, 1.0)
        axes[0].plot(ks, heights, "-o", color=color, label=name, ms=4)
        inter.add_trace(go.Scatter(x=ks, y=heights, mode="lines+markers", name=name, legendgroup=name), 1, 1)
        if acc is not None:
            axes[1].plot(ks, acc, "-o", color=color, label=name, ms=4)
            inter.add_trace(
                go.Scatter(x=ks, y=acc, mode="lines+markers", name=name, legendgroup=name, showlegend=False), 1, 2
            )
    axes[0].axhline(0.02, color="k", lw=0.8, ls=":")
    axes[1].axhline(result.dense, color="k", lw=0.8, ls="--")
    scale = "symlog" if ks.max() > 10 else "linear"
    axes[0].set(xlabel="rewind step k", ylabel="test-error barrier (above endpoint mean)", xscale=scale)
    axes[1].set(xlabel="rewind step k", ylabel="ticket test accuracy", xscale=scale)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    inter.update_xaxes(title_text="rewind step k")
    inter.update_layout(height=400, margin={"t": 40})
    caption = (
        "Left: test-error barrier between two copies of the globally pruned network rewound to step k and "
        "trained with different batch orders (Frankle et al. 2020; dotted: their 2 % stability threshold). "
        "Right: the ticket's test accuracy at the same k (dashed: dense). Rewinding works where the copies are stable."
    )
    return [Figure("instability", "Lottery tickets: instability from the rewound point", fig, inter, caption)]
