"""Figures of connectivity results: curves along paths, barrier vs split step k, vs width."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.connectivity import ConnectResult, InstabilityResult, WidthResult
from losslab.report.figures import Figure, draws, new_figure

__all__: list[str] = []

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
_LABELS = {"loss": "loss", "error": "error (1 − accuracy)"}


def _panels(keys: set[str]) -> list[str]:
    return [kind for kind in ("loss", "error") if f"train_{kind}" in keys]


@draws(ConnectResult)
def _barrier_curves(result: ConnectResult) -> list[Figure]:
    keys = set(result.paths["naive"].values)
    panels = _panels(keys)
    fig, axes = new_figure(5 * len(panels), 3.8, ncols=len(panels))
    axes = np.atleast_1d(axes)
    inter = make_subplots(rows=1, cols=len(panels), subplot_titles=[_LABELS[p] for p in panels])
    for i, (evaluation, color) in enumerate(zip(result.paths.values(), _COLORS, strict=False)):
        for col, (ax, kind) in enumerate(zip(axes, panels, strict=True)):
            for split, style, dash in (("train", "-", "solid"), ("test", "--", "dash")):
                values = evaluation.values.get(f"{split}_{kind}")
                if values is None:
                    continue
                label = f"{evaluation.label} ({split})"
                ax.plot(evaluation.t, values, style, color=color, label=label if col == 0 else None)
                inter.add_trace(
                    go.Scatter(
                        x=evaluation.t,
                        y=values,
                        mode="lines+markers",
                        name=label,
                        line={"color": color, "dash": dash},
                        legendgroup=str(i),
                        showlegend=col == 0,
                    ),
                    1,
                    col + 1,
                )
    for ax, kind in zip(axes, panels, strict=True):
        ax.set(xlabel="t (0 = A, 1 = B)", ylabel=_LABELS[kind])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    inter.update_xaxes(title_text="t (0 = A, 1 = B)")
    inter.update_layout(height=400, margin={"t": 40})
    parts = [f"{e.label}: {e.barrier('train_loss').height:.4g}" for e in result.paths.values()]
    caption = (
        "Loss and error along each path (solid: train, dashed: test). Train-loss barrier above the "
        "line between the endpoint values (Entezari et al. 2022): " + "; ".join(parts) + "."
    )
    if result.alignment is not None:
        a = result.alignment
        caption += (
            f" {a.method} matching took {a.seconds:.3g} s; the permuted B reproduces B's "
            "outputs to "
            f"{a.max_output_change:.2g} (tolerance {a.tolerance:.2g})."
        )
    return [Figure("barrier-curves", "Loss and error along the paths between A and B", fig, inter, caption)]


@draws(InstabilityResult)
def _instability(result: InstabilityResult) -> list[Figure]:
    panels = _panels(set(result.curves))
    fig, axes = new_figure(5 * len(panels) + 5, 3.8, ncols=len(panels) + 1)
    inter = make_subplots(
        rows=1,
        cols=len(panels) + 1,
        subplot_titles=[f"{_LABELS[p]} barrier vs k" for p in panels] + ["along the line"],
    )
    for col, kind in enumerate(panels):
        for (split, style, dash), color in zip(
            (("test", "-o", "solid"), ("train", "--s", "dash")), _COLORS, strict=False
        ):
            curve = f"{split}_{kind}"
            if curve not in result.curves:
                continue
            heights = result.barrier(curve, "mean")
            axes[col].plot(result.ks, heights, style, color=color, label=split)
            inter.add_trace(
                go.Scatter(
                    x=result.ks,
                    y=heights,
                    mode="lines+markers",
                    name=f"{curve} barrier",
                    line={"color": color, "dash": dash},
                ),
                1,
                col + 1,
            )
        axes[col].set(
            xlabel="split step k",
            ylabel=f"{_LABELS[kind]} barrier (above the endpoint mean)",
            xscale="symlog" if result.ks.max() > 10 else "linear",
        )
        axes[col].grid(alpha=0.3)
        axes[col].legend()
    shown = "test_error" if "test_error" in result.curves else next(iter(result.curves))
    shades = np.linspace(0.25, 1.0, len(result.ks))  # later splits darker; ends exactly at 1
    for i, (k, shade) in enumerate(zip(result.ks, shades, strict=True)):
        shade = float(shade)
        axes[-1].plot(result.t, result.curves[shown][i], color=(0.1, 0.3, 0.8, shade), label=f"k={k}")
        inter.add_trace(
            go.Scatter(x=result.t, y=result.curves[shown][i], mode="lines", name=f"k={k}", opacity=shade),
            1,
            len(panels) + 1,
        )
    axes[-1].set(xlabel="t between the two copies", ylabel=shown.replace("_", " "))
    axes[-1].grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    inter.update_layout(height=400, margin={"t": 40})
    caption = (
        f"Two copies split from one run at step k and trained {result.total_steps} − k more "
        f"steps with batch orders {result.seeds}; barrier = largest value on the line between "
        "them minus the mean of "
        "their values (Frankle et al. 2020)."
    )
    return [
        Figure(
            "instability",
            "Instability: barrier between copies split at step k",
            fig,
            inter,
            caption,
        )
    ]


@draws(WidthResult)
def _width(result: WidthResult) -> list[Figure]:
    panels = _panels(set(next(iter(result.curves.values()))))
    timed = [m for m in result.curves if m in result.align_seconds]
    ncols = len(panels) + (1 if timed else 0)
    fig, axes = new_figure(4.5 * ncols, 3.8, ncols=ncols)
    axes = np.atleast_1d(axes)
    titles = [f"train {_LABELS[p]} barrier" for p in panels] + (["alignment time"] if timed else [])
    inter = make_subplots(rows=1, cols=ncols, subplot_titles=titles)
    names = {"none": "naive", "weight": "weight-matched", "activation": "activation-matched"}
    for method, color in zip(result.curves, _COLORS, strict=False):
        for col, kind in enumerate(panels):
            heights = result.barrier(method, f"train_{kind}")
            axes[col].plot(result.widths, heights, "-o", color=color, label=names.get(method, method))
            inter.add_trace(
                go.Scatter(
                    x=result.widths,
                    y=heights,
                    mode="lines+markers",
                    line={"color": color},
                    name=names.get(method, method),
                    legendgroup=method,
                    showlegend=col == 0,
                ),
                1,
                col + 1,
            )
        if method in timed:
            axes[-1].plot(
                result.widths,
                result.align_seconds[method],
                "-o",
                color=color,
                label=names.get(method, method),
            )
            inter.add_trace(
                go.Scatter(
                    x=result.widths,
                    y=result.align_seconds[method],
                    mode="lines+markers",
                    line={"color": color},
                    legendgroup=method,
                    showlegend=False,
                ),
                1,
                ncols,
            )
    for col, title in enumerate(titles):
        axes[col].set(xlabel="width", ylabel="seconds" if title == "alignment time" else title, xscale="log")
        axes[col].set_xticks(result.widths, labels=[str(w) for w in result.widths], minor=False)
        axes[col].minorticks_off()
        axes[col].grid(alpha=0.3)
    axes[0].legend()
    inter.update_xaxes(type="log", title_text="width")
    inter.update_layout(height=400, margin={"t": 40})
    caption = (
        "Barrier above the line between the endpoint values (Entezari et al. 2022) on the "
        f"straight path between two seeds of {result.models[0].split(':')[0]} networks, naive "
        "and after alignment."
    )
    return [Figure("width", "Barrier vs width, before and after alignment", fig, inter, caption)]
