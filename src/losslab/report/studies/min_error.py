"""Figures of the min-error study: certified optimum vs gradient-trained seeds, and the solver's time vs n."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.figures import Figure, draws, new_figure
from losslab.studies.min_error import MinErrorStudyResult

__all__: list[str] = []


def _by_n(values: np.ndarray, elements: np.ndarray, reduce: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    ns = np.unique(elements)
    fn = np.mean if reduce == "mean" else np.max
    return ns, np.array([fn(values[elements == n]) for n in ns], dtype=np.float64)


@draws(MinErrorStudyResult)
def _min_error(result: MinErrorStudyResult) -> list[Figure]:
    n = result.points  # 1 + n + m in both families: the size the MILP sees
    fig, (ax, ax_time) = new_figure(11, 4, ncols=2)
    inter = make_subplots(
        rows=1, cols=2, subplot_titles=("errors vs points (mean over instances)", "seconds vs points")
    )
    done = result.certified == 1
    series = (
        ("certified optimum (MILP)", result.errors[done], n[done], "o-", "C0"),
        ("best of the gradient seeds", result.relax_best, n, "s--", "C3"),
        ("median seed", result.relax_median, n, "^:", "C1"),
        ("planted network (flipped labels)", result.flips, n, "-", "0.6"),
    )
    for label, values, where, style, colour in series:
        if len(values):
            xs, ys = _by_n(values, where)
            ax.plot(xs, ys, style, color=colour, label=label)
            inter.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=label), 1, 1)
    open_gap = ~done
    if open_gap.any():  # a MILP stopped early: its proven bound and the best network known
        best = np.minimum(np.minimum(result.errors, result.relax_best), result.flips)[open_gap]
        ax.vlines(n[open_gap], result.lower_bound[open_gap], best, color="k", lw=1)
        ax.scatter(n[open_gap], result.lower_bound[open_gap], marker="x", color="k", label="proven lower bound")
        ax.scatter(n[open_gap], best, marker="o", facecolors="none", edgecolors="k", label="best network known")
        inter.add_trace(
            go.Scatter(x=n[open_gap], y=result.lower_bound[open_gap], mode="markers", name="lower bound (gap open)"),
            1,
            1,
        )
        inter.add_trace(go.Scatter(x=n[open_gap], y=best, mode="markers", name="best network known"), 1, 1)
    ax.set(xlabel="points (1 + n + m)", ylabel="errors of the 3-node network")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for label, values, marker in (
        ("MILP (min errors)", result.milp_seconds, "o"),
        ("gradient seeds (all)", result.relax_seconds, "s"),
    ):
        ax_time.scatter(n, np.maximum(values, 1e-4), marker=marker, label=label)
        inter.add_trace(go.Scatter(x=n, y=np.maximum(values, 1e-4), mode="markers", name=label), 1, 2)
    ax_time.set(xlabel="points (1 + n + m)", ylabel="seconds", yscale="log")
    ax_time.legend(fontsize=8)
    ax_time.grid(alpha=0.3, which="both")
    inter.update_yaxes(type="log", row=1, col=2)
    inter.update_layout(height=420, margin={"t": 40})
    family = (
        "solvable set-splitting points"
        if result.config.get("family", "set-splitting") == "set-splitting"
        else f"random points of {{0,1}}^{result.config.get('dims')} labelled by a 3-node teacher"
    )
    checks = ", ".join(f"{k} = {v}" for k, v in result.checks().items())
    caption = (
        f"{len(n)} of {result.planned} planned instances ({family} with "
        f"{result.config.get('noise', 0):.0%} of the labels flipped); stopped: {result.stopped} ({result.note}). "
        f"{int(result.certified.sum())} optima certified. Checks (all must be 0): {checks}."
    )
    return [Figure("min-error", "Minimum-error training: certified optimum vs gradient seeds", fig, inter, caption)]
