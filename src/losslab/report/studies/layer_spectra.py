"""Layer spectra: α per layer along training for each label-noise level, beside test error."""

from __future__ import annotations

import matplotlib.figure
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.figures import Figure, draws
from losslab.studies.layer_spectra import LayerSpectraResult

__all__: list[str] = []


@draws(LayerSpectraResult)
def _layer_spectra(result: LayerSpectraResult) -> list[Figure]:
    L = len(result.layers)
    fig = matplotlib.figure.Figure(figsize=(4 * (L + 1), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, L + 1))
    inter = make_subplots(rows=1, cols=L + 1, subplot_titles=[*(f"α of {n}" for n in result.layers), "test error"])
    cmap = matplotlib.colormaps["plasma"]
    x = result.steps
    for i, p in enumerate(result.label_noise):
        color = cmap(i / max(1, len(result.label_noise) - 1) * 0.85)
        for j in range(L):
            ax, a = axes[j], result.alpha[i, :, j]
            ok = result.credible[i, :, j].astype(bool)
            low, high = result.alpha_low[i, :, j], result.alpha_high[i, :, j]
            ax.fill_between(x, low, high, color=color, alpha=0.15, lw=0)
            ax.plot(x, a, "-", color=color, label=f"noise {p:g}")
            ax.plot(x[ok], a[ok], "o", color=color, ms=4)
            ax.plot(x[~ok], a[~ok], "x", color=color, ms=5)
            inter.add_trace(go.Scatter(x=x, y=a, mode="lines+markers", name=f"noise {p:g}"), 1, j + 1)
        axes[L].plot(x, result.test_error[i], "o-", color=color, ms=3, label=f"noise {p:g}")
        inter.add_trace(go.Scatter(x=x, y=result.test_error[i], mode="lines+markers", name=f"noise {p:g}"), 1, L + 1)
    for j, name in enumerate(result.layers):
        axes[j].axhspan(2, 6, color="tab:green", alpha=0.06)
        axes[j].set(title=f"α of {name}", xlabel="SGD step", ylabel="α")
        axes[j].grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[L].set(title="test error", xlabel="SGD step", ylabel="error")
    axes[L].grid(alpha=0.3)
    cfg = result.config
    caption = (
        f"{cfg.get('model')} on {cfg.get('data')}, SGD lr {cfg.get('lr')} batch {cfg.get('batch_size')}, "
        f"{cfg.get('epochs')} epochs. α of the ESD of WᵀW (Clauset x_min), band: its {0.9:.0%} bootstrap "
        "interval; o: credible fit, x: not credible (p-value, Marchenko–Pastur bulk, α > 6 or a wide interval). "
        "Shaded: Martin & Mahoney's 2–6."
    )
    return [Figure("layer-spectra", "α per layer over training and label noise", fig, inter, caption)]
