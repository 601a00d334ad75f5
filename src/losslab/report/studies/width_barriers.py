"""Width barriers: the barrier between two seeds against width, per alignment method, and the alignment time."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.connectivity import COLORS, LABELS, curve_panels
from losslab.report.figures import Figure, draws, new_figure
from losslab.studies.width_barriers import WidthResult

__all__: list[str] = []


@draws(WidthResult)
def _width(result: WidthResult) -> list[Figure]:
    panels = curve_panels(set(next(iter(result.curves.values()))))
    timed = [m for m in result.curves if m in result.align_seconds]
    ncols = len(panels) + (1 if timed else 0)
    fig, axes = new_figure(4.5 * ncols, 3.8, ncols=ncols)
    axes = np.atleast_1d(axes)
    titles = [f"train {LABELS[p]} barrier" for p in panels] + (["alignment time"] if timed else [])
    inter = make_subplots(rows=1, cols=ncols, subplot_titles=titles)
    names = {"none": "naive", "weight": "weight-matched", "activation": "activation-matched"}
    for method, color in zip(result.curves, COLORS, strict=False):
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
