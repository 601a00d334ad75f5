"""Batch size: sharpness measures and test error against the batch, and the line between the solutions."""

from __future__ import annotations

import matplotlib
import matplotlib.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.figures import Figure, draws, new_figure
from losslab.studies.batch_size import BatchSizeResult

__all__: list[str] = []

_MEASURES = (
    ("test_error", "test error"),
    ("lambda_max", "λmax"),
    ("epsilon_sharpness", "ε-sharpness (Keskar)"),
    ("adaptive_sharpness", "adaptive sharpness (scale-invariant)"),
)


@draws(BatchSizeResult)
def _batch_size(result: BatchSizeResult) -> list[Figure]:
    cfg = result.config
    colors = matplotlib.colormaps["tab10"]
    fig, axes = new_figure(21, 3.8, ncols=5)
    titles = [label for _, label in _MEASURES] + ["the line θ(α) = (1 − α)θ_small + αθ_large"]
    inter = make_subplots(rows=1, cols=5, subplot_titles=titles)
    for c, data in enumerate(result.datasets):
        color = colors(c % 10)
        hex_color = matplotlib.colors.to_hex(color)
        b = data.batch_sizes
        for col, (name, label) in enumerate(_MEASURES):
            mean, se = data.stats(name)
            axes[col].errorbar(b, mean, yerr=se, fmt="o-", color=color, capsize=3, label=data.data)
            inter.add_trace(
                go.Scatter(
                    x=b,
                    y=mean,
                    mode="lines+markers",
                    name=data.data,
                    showlegend=col == 0,
                    line={"color": hex_color},
                    error_y={"type": "data", "array": se},
                ),
                1,
                col + 1,
            )
            axes[col].set(xscale="log", xlabel="batch size", ylabel=label)
        line = data.line
        ax = axes[4]
        ax.plot(line.alphas, line.train_loss, "-", color=color, label=f"{data.data} train loss")
        ax.plot(line.alphas, line.test_loss, "--", color=color, label=f"{data.data} test loss")
        inter.add_trace(
            go.Scatter(
                x=line.alphas, y=line.train_loss, mode="lines", name=f"{data.data} train", line={"color": hex_color}
            ),
            1,
            5,
        )
        inter.add_trace(
            go.Scatter(
                x=line.alphas,
                y=line.test_loss,
                mode="lines",
                name=f"{data.data} test",
                line={"color": hex_color, "dash": "dash"},
            ),
            1,
            5,
        )
        twin = ax.twinx()
        twin.plot(line.alphas, line.train_accuracy, ":", color=color, alpha=0.7)
        twin.set_ylabel("train accuracy (dotted)")
    axes[4].axvline(0.0, color="k", lw=0.8)
    axes[4].axvline(1.0, color="k", lw=0.8)
    axes[4].set(xlabel="α (0: small batch, 1: large batch)", ylabel="loss", yscale="log")
    axes[4].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.minorticks_off()
    for ax in axes[:4]:
        ticks = sorted({int(v) for d in result.datasets for v in d.batch_sizes})
        ax.set_xticks(ticks, [str(t) for t in ticks])
    for col in range(1, 5):
        inter.update_xaxes(type="log", row=1, col=col)
    inter.update_yaxes(type="log", row=1, col=5)
    inter.update_layout(height=400, margin={"t": 50})
    verdicts = "; ".join(f"{d.data}: {d.verdict()['supports']}" for d in result.datasets)
    caption = (
        f"SGD with lr {cfg['lr']:g} at the smallest batch (scaling '{cfg['lr_scaling']}'), trained to train loss "
        f"{cfg['target_loss']} within {cfg['epochs']} epochs, {cfg['seeds']} seeds (mean ± standard error). "
        f"ε-sharpness with ε = {cfg['eps']:g}, adaptive sharpness with ρ = {cfg['rho']:g} (ℓ2). "
        f"The line joins seed 0's smallest- and largest-batch solutions (Keskar et al. 2017, Fig. 3). {verdicts}."
    )
    return [
        Figure("batch-size", "Batch size: sharpness, test error and the line between solutions", fig, inter, caption)
    ]
