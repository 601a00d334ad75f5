"""Depth: trainability against depth, per-layer gradients at init, curvature, and the deepest twins' planes."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.figures import Figure, draws, new_figure
from losslab.studies.depth import DepthResult

__all__: list[str] = []

_STYLE = {False: ("plain", "#d62728"), True: ("residual", "#1f77b4")}


def _spread(values: np.ndarray) -> tuple[float, float, float]:
    """Median and the distance to the min and max over seeds (NaN-aware; all-NaN gives NaN)."""
    v = values[np.isfinite(values)]
    if not len(v):
        return np.nan, np.nan, np.nan
    m = float(np.median(v))
    return m, m - float(v.min()), float(v.max()) - m


@draws(DepthResult)
def _depth(result: DepthResult) -> list[Figure]:
    cfg = result.config
    resnet = cfg.get("family", "mlp") == "resnet"
    saddles = all(len(p.index_init) for p in result.points)  # runs saved before the saddle index lack it
    ncols = 5 if saddles else 4
    fig, axes = new_figure(21 if saddles else 17, 3.8, ncols=ncols)
    ax_loss, ax_frac, ax_grad, ax_lam = axes[:4]
    inter = make_subplots(
        rows=1,
        cols=ncols,
        subplot_titles=(
            "final train loss (median, min–max)",
            "fraction of seeds that train",
            f"gradient norm per layer at init, depth {max(cfg['depths'])}",
            "λmax at init (dashed) and at the end",
            *(["saddle index at init (dashed) and end (widest interval)"] if saddles else []),
        ),
    )
    deepest = max(p.depth for p in result.points)
    for residual in (False, True):
        name, color = _STYLE[residual]
        rows = sorted((p for p in result.points if p.residual == residual), key=lambda p: p.depth)
        depths = [p.depth for p in rows]
        med, lo, hi = np.array([_spread(p.final_loss) for p in rows]).T
        ax_loss.errorbar(depths, med, yerr=[lo, hi], fmt="o-", color=color, label=name, capsize=3)
        inter.add_trace(
            go.Scatter(
                x=depths,
                y=med,
                mode="lines+markers",
                name=name,
                line={"color": color},
                error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
            ),
            1,
            1,
        )
        frac = [float(result.trains(p).mean()) for p in rows]
        ax_frac.plot(depths, frac, "o-", color=color, label=name)
        inter.add_trace(
            go.Scatter(x=depths, y=frac, mode="lines+markers", showlegend=False, line={"color": color}), 1, 2
        )
        top = next(p for p in rows if p.depth == deepest)
        layer = np.arange(len(top.layers))
        g_med = np.median(top.grad_norm_init, axis=0)
        ax_grad.semilogy(layer, np.maximum(g_med, 1e-30), "o-", color=color, label=name)
        inter.add_trace(
            go.Scatter(
                x=layer, y=np.maximum(g_med, 1e-30), mode="lines+markers", showlegend=False, line={"color": color}
            ),
            1,
            3,
        )
        lam_init = [float(np.median(p.lambda_max_init)) for p in rows]
        lam_end = [_spread(p.lambda_max_end)[0] for p in rows]
        ax_lam.plot(depths, lam_init, "s--", color=color)
        ax_lam.plot(depths, lam_end, "o-", color=color, label=name)
        inter.add_trace(
            go.Scatter(
                x=depths, y=lam_init, mode="lines+markers", showlegend=False, line={"color": color, "dash": "dash"}
            ),
            1,
            4,
        )
        inter.add_trace(
            go.Scatter(x=depths, y=lam_end, mode="lines+markers", showlegend=False, line={"color": color}), 1, 4
        )
        if saddles:
            for when, style, dash in (("init", "s--", "dash"), ("end", "o-", None)):
                med = np.array([_spread(getattr(p, f"index_{when}"))[0] for p in rows])
                low = np.array([np.nanmin(getattr(p, f"index_{when}_low"), initial=np.nan) for p in rows])
                high = np.array([np.nanmax(getattr(p, f"index_{when}_high"), initial=np.nan) for p in rows])
                err = [np.maximum(med - low, 0), np.maximum(high - med, 0)]
                axes[4].errorbar(depths, med, yerr=err, fmt=style, color=color, capsize=3, label=f"{name}, {when}")
                inter.add_trace(
                    go.Scatter(
                        x=depths,
                        y=med,
                        mode="lines+markers",
                        showlegend=False,
                        line={"color": color, "dash": dash},
                        error_y={"type": "data", "symmetric": False, "array": err[1], "arrayminus": err[0]},
                    ),
                    1,
                    5,
                )
    unit = "depth (layers, 6n+2)" if resnet else "depth (hidden layers)"
    ax_loss.set(xscale="log", yscale="log", xlabel=unit, ylabel="final train loss")
    ax_frac.set(xscale="log", xlabel="depth", ylabel="fraction of seeds", ylim=(-0.05, 1.05))
    ax_grad.set(xlabel="layer (0: stem, last: head)", ylabel="‖∂L/∂θ_layer‖ at init")
    ax_lam.set(xscale="log", yscale="log", xlabel="depth", ylabel="λmax")
    if saddles:
        axes[4].set(xscale="log", xlabel="depth", ylabel="fraction of eigenvalues < −τ", ylim=(-0.05, 1.05))
    ticks = sorted({p.depth for p in result.points})  # label the depths run, not log-axis decades
    for ax in (ax_loss, ax_frac, ax_lam, *axes[4:]):
        ax.minorticks_off()
        ax.set_xticks(ticks, [str(t) for t in ticks])
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for col in (1, 2, 4, 5)[: ncols - 1]:
        inter.update_xaxes(type="log", row=1, col=col)
    for col in (1, 3, 4):
        inter.update_yaxes(type="log", row=1, col=col)
    inter.update_layout(height=400, margin={"t": 50})
    if resnet:
        nets = f"CIFAR-style ResNets (resnetN vs resnetN-noshort, batch norm) of base width {cfg['width']}"
        twins = "The residual twin adds only the 1×1 projection shortcuts; batch norm trains in train mode, "
        twins += "everything else is measured in eval mode."
    else:
        nets = f"MLPs of width {cfg['width']} ({cfg['act']})"
        twins = "Plain and residual twins have the same parameters; only the skip differs."
    caption = (
        f"{nets} on {result.n_train} rows of {cfg['data']}, "
        f"{cfg['seeds']} seeds, {cfg['optimizer']} lr {cfg['lr']:g}, batch {cfg['batch_size']}, {cfg['steps']} steps. "
        f"A seed trains when its final loss is below {cfg['trains_below']:g}·ln {result.classes}. {twins}"
        + (
            " Saddle index: the share of Hessian eigenvalues below −τ by stochastic Lanczos quadrature (median "
            "over seeds; bars: the widest interval of any seed, which covers the quadrature's own error)."
            if saddles
            else ""
        )
    )
    figures = [Figure("depth", "Depth: plain vs residual networks", fig, inter, caption)]

    if result.planes:
        fig, axes = new_figure(14, 3.6, ncols=2 * len(result.planes))
        axes = np.atleast_1d(axes)
        titles = []
        for plane_ in result.planes:
            name = _STYLE[plane_.residual][0]
            titles += [f"{name}: log10 train loss", f"{name}: |λmin/λmax|"]
        inter = make_subplots(rows=1, cols=len(titles), subplot_titles=titles)
        for k, plane_ in enumerate(result.planes):
            log_loss = np.log10(np.maximum(plane_.loss, 1e-12))
            ax = axes[2 * k]
            cs = ax.contourf(plane_.a, plane_.b, log_loss.T, levels=20, cmap="viridis")
            fig.colorbar(cs, ax=ax)
            ax.set(title=titles[2 * k], xlabel="d₁", ylabel="d₂")
            inter.add_trace(
                go.Contour(x=plane_.a, y=plane_.b, z=log_loss.T, colorscale="Viridis", showscale=False), 1, 2 * k + 1
            )
            ax = axes[2 * k + 1]
            im = ax.pcolormesh(
                plane_.convexity_a, plane_.convexity_b, plane_.convexity.T, cmap="magma_r", vmin=0.0, vmax=1.0
            )
            fig.colorbar(im, ax=ax)
            ax.set(title=titles[2 * k + 1], xlabel="d₁", ylabel="d₂")
            inter.add_trace(
                go.Heatmap(
                    x=plane_.convexity_a,
                    y=plane_.convexity_b,
                    z=plane_.convexity.T,
                    zmin=0,
                    zmax=1,
                    colorscale="Magma",
                    reversescale=True,
                    showscale=False,
                ),
                1,
                2 * k + 2,
            )
        inter.update_layout(height=380, margin={"t": 50})
        caption = (
            f"Depth {result.planes[0].depth or deepest}, final θ of seed index "
            f"{'/'.join(str(p.member) for p in result.planes)}: the train loss on a "
            f"{cfg['grid']}×{cfg['grid']} plane along two "
            "filter-normalized Gaussian directions ("
            + ("draws differ: the shortcuts change the layout" if resnet else "one draw for both twins")
            + "), and |λmin/λmax| of the Hessian on a "
            f"{cfg['convexity_grid']}×{cfg['convexity_grid']} grid of the same plane (Li et al. 2018, Fig. 5 and 7: "
            "near 0 is locally convex)."
        )
        figures.append(Figure("depth-planes", "Depth: loss planes and convexity maps", fig, inter, caption))
    return figures
