"""Saddles: loss, gradient norm, extreme eigenvalues and the saddle index along training."""

from __future__ import annotations

import matplotlib
import matplotlib.figure
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.figures import Figure, draws
from losslab.studies.saddles import SaddlesResult

__all__: list[str] = []


@draws(SaddlesResult)
def _saddles(result: SaddlesResult) -> list[Figure]:
    fig = matplotlib.figure.Figure(figsize=(9, 9), layout="constrained")
    ax_loss, ax_grad, ax_eig, ax_index = fig.subplots(4, 1, sharex=True)
    inter = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        subplot_titles=("train loss", "gradient norm", "extreme eigenvalues", "saddle index"),
    )
    x = result.steps
    half = (x[1] - x[0]) / 2 if len(x) > 1 else 0.5
    for first, last in result.plateau_spans():
        for ax in (ax_loss, ax_grad, ax_eig, ax_index):
            ax.axvspan(first - half, last + half, color="tab:orange", alpha=0.15, lw=0)
        inter.add_vrect(x0=first - half, x1=last + half, fillcolor="orange", opacity=0.15, line_width=0)
    ax_loss.plot(result.record_steps, result.record_loss, color="0.5", lw=1)
    ax_loss.plot(x, result.loss, "o", ms=3, color="tab:blue")
    ax_loss.set(ylabel="train loss", yscale="log")
    inter.add_trace(go.Scatter(x=result.record_steps, y=result.record_loss, mode="lines", name="loss"), 1, 1)
    ax_grad.plot(x, result.grad_norm, "o-", ms=3, color="tab:green")
    ax_grad.set(ylabel="‖∇L‖", yscale="log")
    inter.add_trace(go.Scatter(x=x, y=result.grad_norm, mode="lines+markers", name="‖∇L‖"), 2, 1)
    ax_eig.plot(x, result.lambda_max, "o-", ms=3, color="tab:red", label="λmax")
    ax_eig.plot(x, result.lambda_min, "s-", ms=3, color="tab:purple", label="λmin")
    ax_eig.axhline(0.0, color="k", lw=0.8)
    # λ spans decades of both signs: linear within the smallest |λmin| seen, logarithmic outside.
    ax_eig.set_yscale("symlog", linthresh=float(np.nanmin(np.abs(result.lambda_min))) or 1e-6)
    ax_eig.set(ylabel="eigenvalue")
    ax_eig.legend(fontsize=8)
    inter.add_trace(go.Scatter(x=x, y=result.lambda_max, mode="lines+markers", name="λmax"), 3, 1)
    inter.add_trace(go.Scatter(x=x, y=result.lambda_min, mode="lines+markers", name="λmin"), 3, 1)
    low, high = result.index - result.index_low, result.index_high - result.index
    ax_index.errorbar(
        x, result.index, yerr=[np.maximum(low, 0), np.maximum(high, 0)], fmt="o-", ms=3, color="tab:brown", capsize=2
    )
    ax_index.set(xlabel="step", ylabel="fraction of λ < −τ")
    inter.add_trace(
        go.Scatter(
            x=x,
            y=result.index,
            mode="lines+markers",
            name="saddle index",
            error_y={
                "type": "data",
                "symmetric": False,
                "array": np.maximum(high, 0),
                "arrayminus": np.maximum(low, 0),
            },
        ),
        4,
        1,
    )
    for ax in (ax_loss, ax_grad, ax_eig, ax_index):
        ax.grid(alpha=0.3)
    inter.update_yaxes(type="log", row=1, col=1)
    inter.update_yaxes(type="log", row=2, col=1)
    inter.update_xaxes(title_text="step", row=4, col=1)
    inter.update_layout(height=900, margin={"t": 40})
    cfg = result.config
    caption = (
        f"{cfg.get('model')} ({result.params:,} parameters) on {cfg.get('data')} with {cfg.get('loss')}, "
        f"{cfg.get('optimizer')} lr {cfg.get('lr')} from {cfg.get('init_scale')}× the initialization. "
        f"Shaded: plateaus, where ‖∇L‖ ≤ {cfg.get('plateau_grad')}·max‖∇L‖ and λmin ≤ "
        f"−{cfg.get('plateau_curvature')}·λmax (approximate strict saddles). Saddle index: fraction of "
        "eigenvalues below −τ (τ = 1e-3·λmax unless set) by stochastic Lanczos quadrature, with its "
        "confidence interval."
    )
    return [Figure("saddles", "Saddles along training", fig, inter, caption)]
