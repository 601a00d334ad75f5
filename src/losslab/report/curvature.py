"""Figures of curvature results: eigenvalues with residuals, spectral density, saddle index,
trace convergence, sharpness ascent, per-layer curvature, and sharpness along training."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.curvature import (
    Eigenpairs,
    LayerCurvature,
    SaddleIndex,
    Sharpness,
    SharpnessTrack,
    SpectralDensity,
    TraceEstimate,
)
from losslab.report.figures import Figure, draws, new_figure

__all__: list[str] = []


def _powers_of_ten(fig: go.Figure) -> None:
    """Ticks as 10⁻⁵ and 2×10⁻⁵, not plotly's SI prefixes ("10µ" reads as ten micro-units of something)."""
    fig.update_xaxes(exponentformat="power")
    fig.update_yaxes(exponentformat="power")


@draws(Eigenpairs)
def _eigenpairs(result: Eigenpairs) -> list[Figure]:
    k = len(result.eigenvalues)
    if k == 0:
        return []
    index = np.arange(1, k + 1)
    relative = result.residuals / result.norm_estimate
    colors = np.where(result.converged, "tab:blue", "tab:red")
    side = "largest" if result.which == "top" else "most negative"
    source = "measured with one extra product each" if result.residual_source == "product" else "from the Lanczos bound"
    fig, (ax_val, ax_res) = new_figure(10, 3.6, ncols=2)
    ax_val.errorbar(index, result.eigenvalues, yerr=result.residuals, fmt="o", capsize=4)
    ax_val.set(xlabel=f"index ({side} first)", ylabel="eigenvalue", xticks=index)
    ax_val.axhline(0.0, color="0.6", lw=0.8)
    ax_res.bar(index, np.maximum(relative, 1e-300), color=list(colors))
    ax_res.axhline(result.tol, color="k", ls="--", lw=1, label=f"tol {result.tol:g}")
    ax_res.set(xlabel="index", ylabel="‖Hv − λv‖ / ‖H‖", yscale="log", xticks=index)
    ax_res.legend()
    for ax in (ax_val, ax_res):
        ax.grid(alpha=0.3)
    inter = make_subplots(rows=1, cols=2, subplot_titles=("eigenvalues ± residual", "relative residual"))
    inter.add_trace(
        go.Scatter(
            x=index,
            y=result.eigenvalues,
            mode="markers",
            name="eigenvalue",
            error_y={"type": "data", "array": result.residuals},
        ),
        1,
        1,
    )
    inter.add_trace(
        go.Bar(
            x=index,
            y=relative,
            marker_color=["#1f77b4" if c else "#d62728" for c in result.converged],
            name="residual / ‖H‖",
        ),
        1,
        2,
    )
    inter.add_hline(y=result.tol, line_dash="dash", row=1, col=2)
    inter.update_yaxes(type="log", row=1, col=2)
    _powers_of_ten(inter)
    inter.update_layout(height=380, margin={"t": 40}, showlegend=False)
    caption = (
        f"{k} {side} eigenvalues of the {result.operator} ({result.hvps} products, "
        f"{result.restarts} restarts); "
        f"{int(result.converged.sum())}/{k} certified at ‖Hv − λv‖ ≤ {result.tol:g}·‖H‖ "
        f"(residuals {source}" + ("; red bars: not converged)." if not bool(np.all(result.converged)) else ").")
    )
    return [
        Figure(
            f"eigenvalues-{result.which}",
            f"{side.capitalize()} eigenvalues with residuals",
            fig,
            inter,
            caption,
        )
    ]


@draws(SpectralDensity)
def _density(result: SpectralDensity) -> list[Figure]:
    floor = max(float(result.density.max()) * 1e-10, 1e-300)
    density = np.maximum(result.density, floor)
    fig, ax = new_figure(7, 3.8)
    ax.semilogy(result.grid, density, lw=1)
    ax.axvline(0.0, color="0.6", lw=0.8)
    ax.set(xlabel="eigenvalue", ylabel="density (fraction per unit)", ylim=(floor, None))
    ax.grid(alpha=0.3)
    inter = go.Figure(go.Scatter(x=result.grid, y=density, mode="lines", name="density"))
    inter.update_yaxes(type="log", title_text="density")
    _powers_of_ten(inter)
    inter.update_xaxes(title_text="eigenvalue")
    inter.update_layout(height=380, margin={"t": 30})
    caption = (
        f"Stochastic Lanczos quadrature, {result.starts} starts × {result.nodes.shape[1]} steps "
        f"({result.hvps} products), Gaussian width σ = {result.sigma:.3g}. Spectrum within "
        f"[{result.lambda_min:.4g}, {result.lambda_max:.4g}] (extreme nodes); "
        f"trace {result.trace:.4g} ± "
        f"{result.trace_stderr:.2g}."
    )
    return [Figure("density", "Hessian spectral density (log scale)", fig, inter, caption)]


@draws(SaddleIndex)
def _saddle(result: SaddleIndex) -> list[Figure]:
    lo = min(result.lambda_min * 1.5, -3 * result.tau)
    hi = max(abs(result.lambda_min), 5 * result.tau, 1e-12)
    keep = (result.grid >= lo) & (result.grid <= hi)
    fig, ax = new_figure(7, 3.8)
    for b, cdf in enumerate(result.cdf):
        ax.plot(result.grid[keep], cdf[keep], lw=1, alpha=0.8, label="per start" if b == 0 else None)
    ax.axvline(-result.tau, color="k", ls="--", lw=1, label=f"−τ = {-result.tau:.3g}")
    # Both intervals are about one number, the fraction below −τ, so they are drawn at t = −τ: a band across every t
    # (as before) claimed the CDF lies in it everywhere, and a [0, 1] bound painted the whole panel grey.
    informative = result.bound_high - result.bound_low < 1.0
    if informative:
        ax.errorbar(
            [-result.tau],
            [0.5 * (result.bound_low + result.bound_high)],
            yerr=[[0.5 * (result.bound_high - result.bound_low)]],
            fmt="none",
            ecolor="tab:gray",
            elinewidth=6,
            alpha=0.5,
            label="with the quadrature's error (CMS bound)",
        )
    ax.errorbar(
        [-result.tau],
        [result.fraction],
        yerr=[[result.fraction - result.fraction_low], [result.fraction_high - result.fraction]],
        fmt="o",
        color="tab:orange",
        capsize=4,
        label=f"fraction < −τ, {result.confidence:.0%} CI over starts",
    )
    ax.set(xlabel="eigenvalue t", ylabel="fraction of eigenvalues ≤ t")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    inter = go.Figure()
    for b, cdf in enumerate(result.cdf):
        inter.add_trace(go.Scatter(x=result.grid[keep], y=cdf[keep], mode="lines", name=f"start {b}"))
    inter.add_vline(x=-result.tau, line_dash="dash")
    if informative:
        inter.add_trace(
            go.Scatter(
                x=[-result.tau, -result.tau],
                y=[result.bound_low, result.bound_high],
                mode="lines",
                line={"color": "gray", "width": 6},
                opacity=0.5,
                name="CMS bound",
            )
        )
    inter.add_trace(
        go.Scatter(
            x=[-result.tau],
            y=[result.fraction],
            mode="markers",
            marker={"color": "orange", "size": 9},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [result.fraction_high - result.fraction],
                "arrayminus": [result.fraction - result.fraction_low],
            },
            name=f"fraction < −τ ({result.confidence:.0%} CI)",
        )
    )
    inter.update_layout(height=380, margin={"t": 30}, xaxis_title="eigenvalue t", yaxis_title="fraction ≤ t")
    count = "not computed" if result.count is None else str(result.count)
    caption = (
        f"Verdict: {result.verdict}. Fraction of eigenvalues below −τ: {result.fraction:.3g} "
        f"[{result.fraction_low:.3g}, {result.fraction_high:.3g}] over the random starts, "
        + (
            f"[{result.bound_low:.3g}, {result.bound_high:.3g}] with the quadrature's resolution "
            if informative
            else "not bounded by the quadrature's resolution at this many steps (its interval is [0, 1]) "
        )
        + f"(≈ {result.count_estimate:.0f} of {result.dim}); "
        f"at least {result.count_lower} certified by interlacing, exact count {count}; "
        f"λmin = {result.lambda_min:.4g} (residual {result.lambda_min_residual:.2g}), "
        f"|λmin|/λmax = {result.ratio:.3g}."
    )
    return [Figure("saddle", "Saddle index: the negative part of the spectrum", fig, inter, caption)]


@draws(TraceEstimate)
def _trace(result: TraceEstimate) -> list[Figure]:
    x, y, err = result.history_hvps, result.history_estimate, result.history_stderr
    finite = np.isfinite(err)
    fig, ax = new_figure(7, 3.6)
    ax.plot(x, y, "o-", ms=3)
    ax.fill_between(
        x[finite],
        (y - 2 * err)[finite],
        (y + 2 * err)[finite],
        alpha=0.25,
        label="± 2 standard errors",
    )
    ax.set(xlabel="Hessian-vector products", ylabel="trace estimate")
    ax.grid(alpha=0.3)
    ax.legend()
    inter = go.Figure(
        go.Scatter(
            x=x,
            y=y,
            mode="lines+markers",
            name=result.method,
            error_y={"type": "data", "array": np.where(finite, 2 * err, 0.0)},
        )
    )
    inter.update_layout(height=360, margin={"t": 30}, xaxis_title="Hessian-vector products", yaxis_title="trace")
    caption = (
        f"{result.method}: tr = {result.estimate:.6g} ± {result.stderr:.2g} "
        f"after {result.hvps} products "
        f"({'converged' if result.converged else 'budget spent'} at tolerance {result.tol:g})."
    )
    return [
        Figure(
            f"trace-{result.method}",
            f"Trace of the {result.operator} ({result.method})",
            fig,
            inter,
            caption,
        )
    ]


@draws(Sharpness)
def _sharpness(result: Sharpness) -> list[Figure]:
    fig, ax = new_figure(7, 3.6)
    inter = go.Figure()
    for part, label in (
        (result.epsilon, f"ε-box, ε = {result.epsilon.radius:g}"),
        (result.adaptive, f"adaptive ℓ{result.adaptive.norm}, ρ = {result.adaptive.radius:g}"),
    ):
        steps = np.arange(len(part.history))
        ax.plot(steps, part.history, "o-", ms=3, label=label)
        inter.add_trace(go.Scatter(x=steps, y=part.history, mode="lines+markers", name=label))
    avg = result.average
    ax.axhline(avg.increase, color="k", ls="--", lw=1, label=f"average, σ = {avg.sigma:g}")
    ax.set(
        xlabel="ascent step",
        ylabel="loss increase",
        yscale="log"
        if min(result.epsilon.history[-1], result.adaptive.history[-1], max(avg.increase, 0)) > 0
        else "linear",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    inter.add_hline(y=avg.increase, line_dash="dash")
    inter.update_layout(height=360, margin={"t": 30}, xaxis_title="ascent step", yaxis_title="loss increase")
    caption = (
        f"λmax = {result.lambda_max:.5g} (residual {result.lambda_max_residual:.2g}); "
        f"ε-sharpness (Keskar) {result.epsilon.value:.4g}; "
        f"adaptive sharpness {result.adaptive.value:.4g}; "
        f"average-case {avg.increase:.4g} ± {avg.stderr:.2g}. "
        "Worst-case values are lower bounds found by "
        "projected gradient ascent."
    )
    return [Figure("sharpness", "Sharpness: worst case by ascent, average under noise", fig, inter, caption)]


@draws(LayerCurvature)
def _layers(result: LayerCurvature) -> list[Figure]:
    labels = [f"{g} ({m}, {s})" for g, m, s in zip(result.groups, result.modules, result.sizes, strict=True)]
    x = np.arange(len(labels))
    fig, (ax_l, ax_t) = new_figure(10, 3.8, ncols=2)
    ax_l.bar(x, result.lambda_max, yerr=result.residuals, capsize=3)
    ax_l.set(ylabel="λmax of the layer block", xticks=x)
    ax_l.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax_t.bar(x, result.trace, yerr=2 * result.trace_stderr, capsize=3, color="tab:green")
    ax_t.set(ylabel="trace of the layer block (± 2 s.e.)", xticks=x)
    ax_t.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    for ax in (ax_l, ax_t):
        ax.grid(alpha=0.3, axis="y")
    inter = make_subplots(rows=1, cols=2, subplot_titles=("λmax per layer", "trace per layer"))
    inter.add_trace(
        go.Bar(
            x=labels,
            y=result.lambda_max,
            error_y={"type": "data", "array": result.residuals},
            name="λmax",
        ),
        1,
        1,
    )
    inter.add_trace(
        go.Bar(
            x=labels,
            y=result.trace,
            error_y={"type": "data", "array": 2 * result.trace_stderr},
            name="trace",
        ),
        1,
        2,
    )
    inter.update_layout(height=400, margin={"t": 40}, showlegend=False)
    caption = (
        f"Diagonal blocks of the {result.operator} per parameter group ({result.hvps} products). "
        "λmax of a block is at most the full λmax (interlacing); "
        "block traces sum to the full trace."
    )
    return [Figure("layers", "Curvature per layer", fig, inter, caption)]


@draws(SharpnessTrack)
def _track(result: SharpnessTrack) -> list[Figure]:
    if len(result.steps) == 0:
        return []
    fig, (ax_loss, ax_sharp) = new_figure(10, 3.6, ncols=2)
    if len(result.record_steps):
        ax_loss.plot(result.record_steps, result.record_loss)
        ax_loss.set(yscale="log" if np.nanmin(result.record_loss) > 0 else "linear")
    ax_loss.set(xlabel="step", ylabel="train loss")
    ax_sharp.plot(result.steps, result.lambda_max, "o-", ms=3, label="λmax")
    finite = np.isfinite(result.threshold)
    if finite.any():
        ax_sharp.plot(
            result.steps[finite],
            result.threshold[finite],
            "k--",
            lw=1,
            label="stability threshold (2/η)",
        )
    ax_sharp.set(xlabel="step", ylabel="sharpness λmax")
    for ax in (ax_loss, ax_sharp):
        ax.grid(alpha=0.3)
    ax_sharp.legend()
    inter = make_subplots(rows=1, cols=2, subplot_titles=("train loss", "sharpness"))
    inter.add_trace(
        go.Scatter(x=result.record_steps, y=result.record_loss, mode="lines", name="train loss"),
        1,
        1,
    )
    inter.add_trace(
        go.Scatter(
            x=result.steps,
            y=result.lambda_max,
            mode="lines+markers",
            name="λmax",
            error_y={"type": "data", "array": result.residuals},
        ),
        1,
        2,
    )
    if finite.any():
        inter.add_trace(
            go.Scatter(
                x=result.steps[finite],
                y=result.threshold[finite],
                mode="lines",
                line={"dash": "dash", "color": "black"},
                name="threshold",
            ),
            1,
            2,
        )
    inter.update_layout(height=380, margin={"t": 40})
    caption = (
        f"λmax of the {result.operator} every {result.every} steps "
        f"({int(result.hvps.sum())} products in all, "
        f"warm-started); optimizer {result.optimizer}. Cohen et al. (2021): under full-batch GD, "
        "λmax rises "
        "to 2/η and hovers there (the edge of stability)."
    )
    return [Figure("edge-of-stability", "Sharpness along training (edge of stability)", fig, inter, caption)]
