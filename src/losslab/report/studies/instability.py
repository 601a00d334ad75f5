"""Instability: the barrier between two SGD copies against the split step k, and the lines themselves."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.connectivity import COLORS, LABELS, curve_panels
from losslab.report.figures import Figure, draws, new_figure
from losslab.studies.instability import InstabilityResult

__all__: list[str] = []


@draws(InstabilityResult)
def _instability(result: InstabilityResult) -> list[Figure]:
    panels = curve_panels(set(result.curves))
    fig, axes = new_figure(5 * len(panels) + 5, 3.8, ncols=len(panels) + 1)
    inter = make_subplots(
        rows=1,
        cols=len(panels) + 1,
        subplot_titles=[f"{LABELS[p]} barrier vs k" for p in panels] + ["along the line"],
    )
    for col, kind in enumerate(panels):
        for (split, style, dash), color in zip(
            (("test", "-o", "solid"), ("train", "--s", "dash")), COLORS, strict=False
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
            ylabel=f"{LABELS[kind]} barrier (above the endpoint mean)",
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
