"""Figures of the empirical NTK (kernel and spectrum) and of layer spectra (ESDs, α per layer)."""

from __future__ import annotations

import matplotlib.figure
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.ntk.run import NTKResult
from losslab.report.figures import Figure, draws
from losslab.spectra.run import SpectraResult

__all__: list[str] = []


@draws(NTKResult)
def _ntk(result: NTKResult) -> list[Figure]:
    fig = matplotlib.figure.Figure(figsize=(10, 4), layout="constrained")
    ax_k, ax_s = fig.subplots(1, 2)
    image = ax_k.imshow(result.trace_kernel, cmap="viridis")
    fig.colorbar(image, ax=ax_k, shrink=0.8)
    ax_k.set(title="Σₐ Θ(xᵢ, xⱼ)ₐₐ", xlabel="j", ylabel="i")
    lam = np.clip(result.eigenvalues, 1e-300, None)
    ax_s.semilogy(np.arange(1, len(lam) + 1), lam, ".", ms=3)
    ax_s.set(title="eigenvalues of Θ", xlabel="index", ylabel="λ")
    ax_s.grid(alpha=0.3)
    inter = make_subplots(rows=1, cols=2, subplot_titles=("trace kernel", "eigenvalues"))
    inter.add_trace(go.Heatmap(z=result.trace_kernel, colorscale="Viridis"), 1, 1)
    inter.add_trace(go.Scatter(y=lam, mode="markers", name="λ"), 1, 2)
    inter.update_yaxes(type="log", row=1, col=2)
    caption = (
        f"Empirical NTK on {result.n} rows, {result.outputs} outputs, {result.params:,} parameters, by "
        f"{result.method} in {result.seconds:.3g} s; asymmetry {result.asymmetry:.2g}, "
        f"λmin/λmax = {result.eigenvalues[-1] / result.eigenvalues[0]:.2g}."
    )
    return [Figure("ntk", "Neural tangent kernel", fig, inter, caption)]


@draws(SpectraResult)
def _spectra(result: SpectraResult) -> list[Figure]:
    layers = result.layers
    cols = min(3, len(layers))
    rows = (len(layers) + cols - 1) // cols
    fig = matplotlib.figure.Figure(figsize=(4 * cols, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    inter = make_subplots(rows=rows, cols=cols, subplot_titles=[layer.name for layer in layers])
    for i, layer in enumerate(layers):
        ax, lam = axes[i], layer.eigenvalues[layer.eigenvalues > 0]
        bins = np.logspace(np.log10(lam[0]), np.log10(lam[-1]) + 1e-9, 30)
        ax.hist(lam, bins=bins, density=True, color="tab:blue", alpha=0.6)
        fit = layer.fit
        if np.isfinite(fit.alpha):
            share = fit.tail / fit.n
            x = np.logspace(np.log10(fit.xmin), np.log10(fit.xmax), 50)
            ax.plot(x, share * (fit.alpha - 1) / fit.xmin * (x / fit.xmin) ** (-fit.alpha), "r-", lw=1.5)
        ax.axvline(layer.bulk_edge, color="k", ls="--", lw=1)
        state = "" if fit.credible else " (not credible)"
        ax.set(xscale="log", yscale="log", title=f"{layer.name}: α = {fit.alpha:.2f}{state}", xlabel="λ of WᵀW")
        r, c = divmod(i, cols)
        inter.add_trace(go.Histogram(x=np.log10(lam), nbinsx=30, name=layer.name), r + 1, c + 1)
    for ax in axes[len(layers) :]:
        ax.set_axis_off()
    caption = (
        "ESD of WᵀW per layer (log–log histogram), the fitted power law above x_min (red) and the "
        "Marchenko–Pastur bulk edge of a random matrix with the same shape and entry variance (dashed). "
        "'not credible': see the run's warnings (p-value, bulk edge, steep α, wide interval)."
    )
    figures = [Figure("esd", "Layer spectra", fig, inter, caption)]
    fig2 = matplotlib.figure.Figure(figsize=(max(4, 0.8 * len(layers) + 2), 3.5), layout="constrained")
    ax = fig2.subplots()
    x = np.arange(len(layers))
    a = result.alpha
    lo = np.array([layer.fit.alpha_low for layer in layers])
    hi = np.array([layer.fit.alpha_high for layer in layers])
    ok = np.array([layer.fit.credible for layer in layers])
    # A percentile interval need not contain the point estimate: clip the bar, do not fail on it.
    yerr = [np.maximum(np.nan_to_num(a - lo), 0.0), np.maximum(np.nan_to_num(hi - a), 0.0)]
    ax.errorbar(x, a, yerr=yerr, fmt="none", ecolor="0.4", capsize=3)
    ax.plot(x[ok], a[ok], "o", color="tab:green", label="credible")
    ax.plot(x[~ok], a[~ok], "x", color="tab:red", label="not credible")
    ax.axhspan(2, 6, color="tab:green", alpha=0.08)
    ax.set_xticks(x, result.names, rotation=30, ha="right")
    ax.set(ylabel="α", title="power-law exponent per layer")
    ax.legend(fontsize=8)
    inter2 = go.Figure(
        go.Scatter(
            x=result.names,
            y=a,
            mode="markers",
            error_y={"type": "data", "symmetric": False, "array": yerr[1], "arrayminus": yerr[0]},
        )
    )
    caption2 = f"α with its {layers[0].fit.level:.0%} bootstrap interval; shaded: Martin & Mahoney's 2–6."
    figures.append(Figure("alpha", "α per layer", fig2, inter2, caption2))
    return figures
