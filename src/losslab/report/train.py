"""Figures of training runs: loss and accuracy along training; final losses of a seed ensemble."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.figures import Figure, draws, new_figure
from losslab.train import EnsembleResult, TrainResult

__all__: list[str] = []


@draws(TrainResult)
def _training_curves(result: TrainResult) -> list[Figure]:
    h = result.history
    x = h["epoch"]
    fig, (ax_loss, ax_acc) = new_figure(10, 3.6, ncols=2)
    inter = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for key, label, style in (("loss", "train", "-"), ("test_loss", "test", "--")):
        if np.isfinite(h[key]).any():
            ax_loss.plot(x, h[key], style, label=label)
            inter.add_trace(go.Scatter(x=x, y=h[key], name=f"{label} loss", mode="lines"), 1, 1)
    for key, label, style in (("accuracy", "train", "-"), ("test_accuracy", "test", "--")):
        if np.isfinite(h[key]).any():
            ax_acc.plot(x, h[key], style, label=label)
            inter.add_trace(go.Scatter(x=x, y=h[key], name=f"{label} accuracy", mode="lines"), 1, 2)
    ax_loss.set(xlabel="epoch", ylabel="loss", yscale="log" if np.nanmin(h["loss"]) > 0 else "linear")
    ax_acc.set(xlabel="epoch", ylabel="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    inter.update_xaxes(title_text="epoch")
    inter.update_layout(height=380, margin={"t": 40})
    config = result.config
    caption = (
        f"{result.steps} steps, stopped by {result.stopped}; "
        f"optimizer {config.get('optimizer')}, lr {config.get('lr')}."
    )
    return [Figure("training", "Training curves", fig, inter, caption)]


@draws(EnsembleResult)
def _ensemble(result: EnsembleResult) -> list[Figure]:
    final = result.history["loss"][-1]
    fig, (ax_hist, ax_curves) = new_figure(10, 3.6, ncols=2)
    ax_hist.hist(final[np.isfinite(final)], bins=min(30, max(5, len(final) // 2)))
    ax_hist.set(xlabel="final train loss", ylabel="seeds")
    for k in range(result.history["loss"].shape[1]):
        ax_curves.plot(result.history["epoch"], result.history["loss"][:, k], lw=0.8, alpha=0.6)
    ax_curves.set(
        xlabel="epoch", ylabel="train loss", yscale="log" if np.nanmin(result.history["loss"]) > 0 else "linear"
    )
    inter = make_subplots(rows=1, cols=2, subplot_titles=("final train loss", "train loss per seed"))
    inter.add_trace(go.Histogram(x=final, name="final loss"), 1, 1)
    for k, seed in enumerate(result.seeds):
        inter.add_trace(
            go.Scatter(
                x=result.history["epoch"],
                y=result.history["loss"][:, k],
                mode="lines",
                name=f"seed {seed}",
                showlegend=False,
            ),
            1,
            2,
        )
    inter.update_layout(height=380, margin={"t": 40})
    return [Figure("ensemble", f"{len(result.seeds)} seeds trained together", fig, inter)]
