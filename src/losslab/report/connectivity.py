"""Figures of connectivity results: loss and error along the paths between two networks."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.connectivity import ConnectResult
from losslab.report.figures import Figure, draws, new_figure

__all__: list[str] = []

# Shared with the connectivity studies' figures (report/studies/instability.py, width_barriers.py).
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
LABELS = {"loss": "loss", "error": "error (1 − accuracy)"}


def curve_panels(keys: set[str]) -> list[str]:
    return [kind for kind in ("loss", "error") if f"train_{kind}" in keys]


@draws(ConnectResult)
def _barrier_curves(result: ConnectResult) -> list[Figure]:
    keys = set(result.paths["naive"].values)
    panels = curve_panels(keys)
    fig, axes = new_figure(5 * len(panels), 3.8, ncols=len(panels))
    axes = np.atleast_1d(axes)
    inter = make_subplots(rows=1, cols=len(panels), subplot_titles=[LABELS[p] for p in panels])
    for i, (evaluation, color) in enumerate(zip(result.paths.values(), COLORS, strict=False)):
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
        ax.set(xlabel="t (0 = A, 1 = B)", ylabel=LABELS[kind])
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
