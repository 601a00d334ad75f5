"""Double descent: train and test error against width, and steps to a loss target."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.figures import Figure, draws, new_figure
from losslab.studies.double_descent import DoubleDescentResult

__all__: list[str] = []


@draws(DoubleDescentResult)
def _double_descent(result: DoubleDescentResult) -> list[Figure]:
    w = result.widths
    fig, (ax, ax_steps) = new_figure(10, 3.8, ncols=2)
    ax.plot(w, result.train_error, "o-", label="train error")
    ax.plot(w, result.test_error, "s-", label="test error")
    inter = make_subplots(rows=1, cols=2, subplot_titles=("error vs width", "steps to reach the loss target"))
    inter.add_trace(go.Scatter(x=w, y=result.train_error, name="train error", mode="lines+markers"), 1, 1)
    inter.add_trace(go.Scatter(x=w, y=result.test_error, name="test error", mode="lines+markers"), 1, 1)
    if result.interpolation_threshold is not None:
        ax.axvline(
            result.interpolation_threshold,
            color="k",
            ls=":",
            label=f"interpolation threshold h={result.interpolation_threshold}",
        )
        inter.add_vline(x=result.interpolation_threshold, line_dash="dot", row=1, col=1)
    ax.axvline(result.peak_width, color="r", ls="--", alpha=0.5, label=f"test-error peak h={result.peak_width}")
    ax.set(xscale="log", xlabel="hidden width h", ylabel="error (1 − accuracy)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    finite = np.isfinite(result.steps_to_target)
    ax_steps.plot(w[finite], result.steps_to_target[finite], "o-")
    ax_steps.set(xscale="log", xlabel="hidden width h", ylabel="steps to loss target")
    ax_steps.grid(alpha=0.3)
    inter.add_trace(
        go.Scatter(x=w[finite], y=result.steps_to_target[finite], name="steps to target", mode="lines+markers"), 1, 2
    )
    inter.update_xaxes(type="log", title_text="hidden width h")
    inter.update_layout(height=400, margin={"t": 40})
    caption = (
        f"{result.n_train} training rows with {result.config.get('label_noise', 0):.0%} label noise; "
        f"{result.config.get('seeds')} seed(s) per width, {result.config.get('epochs')} epochs."
    )
    return [Figure("double-descent", "Double descent: error against width", fig, inter, caption)]
