"""Figures of the studies: each draws the picture its claim is about."""

from __future__ import annotations

import matplotlib
import matplotlib.colors
import matplotlib.figure
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.figures import Figure, draws, new_figure
from losslab.studies import (
    DoubleDescentResult,
    GdVsSgdResult,
    RandomLabelsResult,
    RestartsResult,
    SaddlesResult,
)

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


def _log_loss(loss: np.ndarray) -> np.ndarray:
    """log10 of final losses; exact zeros (reached in float64) sit at 1e-16, infinities are dropped."""
    finite = loss[np.isfinite(loss)]
    return np.log10(np.maximum(finite, 1e-16))


@draws(RestartsResult)
def _restarts(result: RestartsResult) -> list[Figure]:
    n = len(result.problems)
    titles = [f"{p.name}: {int(p.reached.sum())}/{len(p.seeds)} reach the target" for p in result.problems]
    fig, axes = new_figure(3.6 * n + 0.5, 3.4, ncols=n)
    axes = np.atleast_1d(axes)
    inter = make_subplots(rows=1, cols=n, subplot_titles=titles)
    for c, (ax, p, title) in enumerate(zip(axes, result.problems, titles, strict=True), start=1):
        logs = _log_loss(p.train_loss)
        ax.hist(logs, bins=min(40, max(8, len(logs) // 2)), color="tab:blue")
        ax.axvline(np.log10(max(p.target_loss, 1e-16)), color="k", ls="--", label=f"target {p.target_loss:g}")
        ax.set(title=title, xlabel="log10 final train loss", ylabel="restarts")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        inter.add_trace(go.Histogram(x=logs, name=p.name, showlegend=False), 1, c)
        inter.add_vline(x=float(np.log10(max(p.target_loss, 1e-16))), line_dash="dash", row=1, col=c)
    inter.update_xaxes(title_text="log10 final train loss")
    inter.update_layout(height=380, margin={"t": 50})
    parts = []
    for p in result.problems:
        spec = p.problem
        text = (
            f"{p.name} ({spec['model']} on {spec['data']}, {spec['optimizer']} lr {spec['lr']:g}, "
            f"{spec['steps']} steps)"
        )
        if np.isfinite(p.test_accuracy).any():
            acc = p.test_accuracy[np.isfinite(p.test_accuracy)]
            text += f": test accuracy {acc.mean():.1%} ± {acc.std():.1%}"
        parts.append(text)
    figures = [Figure("restarts-losses", "Final train loss of each restart", fig, inter, "; ".join(parts) + ".")]

    with_pairs = [p for p in result.problems if len(p.pairs)]
    if with_pairs:
        m = len(with_pairs)
        fig, axes = new_figure(3.6 * m + 0.5, 3.4, ncols=m)
        axes = np.atleast_1d(axes)
        inter = make_subplots(rows=1, cols=m, subplot_titles=[p.name for p in with_pairs])
        kinds = (("both reached the target", "#2ca02c"), ("one reached it", "#ff7f0e"), ("neither", "#d62728"))
        for c, (ax, p) in enumerate(zip(axes, with_pairs, strict=True), start=1):
            reached = p.reached[p.pairs].sum(1)  # 2, 1 or 0 ends at the target
            heights = np.concatenate([p.barrier_naive, p.barrier_aligned])
            heights = heights[np.isfinite(heights)]  # pairs with a diverged end have none
            top = max(float(heights.max()) if len(heights) else 0.0, 1e-12)
            ax.plot([0, top], [0, top], color="0.6", lw=0.8, ls=":")
            for ends, (label, color) in zip((2, 1, 0), kinds, strict=True):
                pick = reached == ends
                if pick.any():
                    ax.scatter(p.barrier_naive[pick], p.barrier_aligned[pick], s=18, color=color, label=label)
                    inter.add_trace(
                        go.Scatter(
                            x=p.barrier_naive[pick],
                            y=p.barrier_aligned[pick],
                            mode="markers",
                            marker={"color": color},
                            name=label,
                            showlegend=c == 1,
                        ),
                        1,
                        c,
                    )
            # Barriers span decades across problems (1e-3 for the teacher, 1 for XOR): symlog,
            # linear below the target loss, where a barrier no longer matters.
            ax.set_xscale("symlog", linthresh=max(p.target_loss, 1e-12))
            ax.set_yscale("symlog", linthresh=max(p.target_loss, 1e-12))
            ax.set(title=p.name, xlabel="barrier on the straight line", ylabel="barrier after alignment")
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
        inter.update_xaxes(title_text="barrier on the straight line")
        inter.update_yaxes(title_text="barrier after alignment", col=1)
        inter.update_layout(height=380, margin={"t": 50})
        caption = (
            f"Train-loss barriers (excess over the line between the end losses) between "
            f"{len(with_pairs[0].pairs)} pairs of restarts per problem, before and after permuting the hidden "
            f"units of one network to match the other ({result.config.get('align')} matching). "
            "Points on the dotted diagonal did not change; points near zero after alignment share a basin."
        )
        figures.append(Figure("restarts-barriers", "How distinct are the restarts?", fig, inter, caption))
    return figures


@draws(RandomLabelsResult)
def _random_labels(result: RandomLabelsResult) -> list[Figure]:
    p = result.fractions
    fig, (ax_curve, ax_fit, ax_curv) = new_figure(14, 3.8, ncols=3)
    inter = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("training accuracy", "time to fit and test accuracy", "curvature at the end"),
        specs=[[{}, {"secondary_y": True}, {"secondary_y": True}]],
    )
    cmap = matplotlib.colormaps["viridis"]
    for i, frac in enumerate(p):
        color = cmap(float(frac))
        keep = np.isfinite(result.accuracy_curve[i])
        ax_curve.plot(result.curve_epochs[keep], result.accuracy_curve[i][keep], color=color, label=f"p = {frac:g}")
        inter.add_trace(
            go.Scatter(
                x=result.curve_epochs[keep], y=result.accuracy_curve[i][keep], mode="lines", name=f"p = {frac:g}"
            ),
            1,
            1,
        )
    ax_curve.set(xlabel="epoch", ylabel="training accuracy (mean over seeds)", ylim=(0, 1.02))
    ax_curve.legend(fontsize=7, title="random labels", title_fontsize=7)

    fit = result.mean("epochs_to_fit")
    for s in range(result.epochs_to_fit.shape[1]):
        ax_fit.plot(p, result.epochs_to_fit[:, s], "o", color="tab:blue", alpha=0.35, ms=4)
    ax_fit.plot(p, fit, "o-", color="tab:blue", label="epochs to 100 % train accuracy")
    ax_fit.set(xlabel="fraction of random labels p", ylabel="epochs to fit")
    ax_fit.yaxis.label.set_color("tab:blue")
    ax_acc = ax_fit.twinx()
    ax_acc.plot(p, result.mean("test_accuracy"), "s--", color="tab:red", label="test accuracy")
    ax_acc.set(ylabel="test accuracy", ylim=(0, 1))
    ax_acc.yaxis.label.set_color("tab:red")
    inter.add_trace(go.Scatter(x=p, y=fit, mode="lines+markers", name="epochs to fit"), 1, 2)
    inter.add_trace(
        go.Scatter(
            x=p, y=result.mean("test_accuracy"), mode="lines+markers", name="test accuracy", line={"dash": "dash"}
        ),
        1,
        2,
        secondary_y=True,
    )

    # Each seed's estimate with its own error bar (Lanczos residual bound; Hutchinson's standard error).
    offsets = np.linspace(-0.012, 0.012, result.lambda_max.shape[1])
    for s, dx in enumerate(offsets):
        ax_curv.errorbar(
            p + dx,
            result.lambda_max[:, s],
            yerr=result.lambda_max_error[:, s],
            fmt="o",
            ms=3,
            color="tab:purple",
            alpha=0.6,
        )
    ax_curv.plot(p, result.mean("lambda_max"), "-", color="tab:purple", label="λmax")
    ax_curv.set(xlabel="fraction of random labels p", ylabel="λmax of the training loss")
    ax_curv.yaxis.label.set_color("tab:purple")
    ax_trace = ax_curv.twinx()
    for s, dx in enumerate(offsets):
        ax_trace.errorbar(
            p + dx, result.trace[:, s], yerr=result.trace_stderr[:, s], fmt="s", ms=3, color="tab:green", alpha=0.6
        )
    ax_trace.plot(p, result.mean("trace"), "--", color="tab:green", label="trace")
    ax_trace.set(ylabel="trace of the Hessian")
    ax_trace.yaxis.label.set_color("tab:green")
    inter.add_trace(
        go.Scatter(
            x=p,
            y=result.mean("lambda_max"),
            mode="lines+markers",
            name="λmax",
            error_y={"type": "data", "array": result.lambda_max_error.max(1)},
        ),
        1,
        3,
    )
    inter.add_trace(
        go.Scatter(
            x=p,
            y=result.mean("trace"),
            mode="lines+markers",
            name="trace",
            error_y={"type": "data", "array": result.trace_stderr.max(1)},
            line={"dash": "dash"},
        ),
        1,
        3,
        secondary_y=True,
    )
    for ax in (ax_curve, ax_fit, ax_curv):
        ax.grid(alpha=0.3)
    inter.update_xaxes(title_text="epoch", row=1, col=1)
    inter.update_xaxes(title_text="fraction of random labels p", row=1, col=2)
    inter.update_xaxes(title_text="fraction of random labels p", row=1, col=3)
    inter.update_layout(height=400, margin={"t": 40})
    cfg = result.config
    unfit = int(np.isnan(result.epochs_to_fit).sum())
    caption = (
        f"{cfg.get('model')} ({result.params:,} parameters) on {result.n_train} training rows of "
        f"{cfg.get('data')}, {cfg.get('optimizer')} lr {cfg.get('lr')}, batch {cfg.get('batch_size')}, "
        f"{cfg.get('seeds')} seed(s) per p, budget {cfg.get('epochs')} epochs"
        + (f"; {unfit} run(s) did not reach 100 % in the budget" if unfit else "; every run reached 100 %")
        + ". Curvature of the training loss at the final θ: λmax ± its residual bound, trace ± one "
        "standard error."
    )
    return [Figure("random-labels", "Random labels: time to fit, test accuracy and curvature", fig, inter, caption)]


@draws(GdVsSgdResult)
def _gd_vs_sgd(result: GdVsSgdResult) -> list[Figure]:
    fig, (ax_loss, ax_sharp, ax_ratio, ax_bar) = new_figure(17, 3.8, ncols=4)
    inter = make_subplots(
        rows=1,
        cols=4,
        subplot_titles=(
            "GD: train loss",
            "GD: sharpness and 2/η",
            "λmax / (2/η) at the end",
            "barrier to the GD solution",
        ),
    )
    gd = [r for r, opt in enumerate(result.optimizer) if opt == "gd"]
    colors = matplotlib.colormaps["tab10"]
    lrs = sorted(set(result.lr.tolist()))
    color_of = {lr: colors(i % 10) for i, lr in enumerate(lrs)}
    hex_of = {lr: matplotlib.colors.to_hex(c) for lr, c in color_of.items()}
    for g, r in enumerate(gd):
        lr = float(result.lr[r])
        keep = np.isfinite(result.loss_curve[r])
        ax_loss.plot(result.record_steps[keep], result.loss_curve[r][keep], color=color_of[lr], label=f"η = {lr:g}")
        inter.add_trace(
            go.Scatter(
                x=result.record_steps[keep],
                y=result.loss_curve[r][keep],
                mode="lines",
                name=f"GD η = {lr:g}",
                line={"color": hex_of[lr]},
            ),
            1,
            1,
        )
        ax_sharp.plot(result.track_steps, result.sharpness[g], color=color_of[lr], label=f"η = {lr:g}")
        ax_sharp.axhline(2 / lr, color=color_of[lr], ls="--", lw=1)
        inter.add_trace(
            go.Scatter(
                x=result.track_steps, y=result.sharpness[g], mode="lines", showlegend=False, line={"color": hex_of[lr]}
            ),
            1,
            2,
        )
        inter.add_hline(y=2 / lr, line_dash="dash", line_color=hex_of[lr], row=1, col=2)
    ax_loss.set(xlabel="step", ylabel="train loss", yscale="log")
    ax_loss.legend(fontsize=8)
    ax_sharp.set(xlabel="step", ylabel="λmax (dashed: 2/η)")
    ax_sharp.set_ylim(bottom=0)
    for lr in lrs:
        rows = [r for r in range(len(result.optimizer)) if result.lr[r] == lr]
        rows.sort(key=lambda r: result.batch_size[r])
        b = result.batch_size[rows]
        ax_ratio.plot(b, result.ratio[rows], "o-", color=color_of[lr], label=f"η = {lr:g}")
        inter.add_trace(
            go.Scatter(
                x=b,
                y=result.ratio[rows],
                mode="lines+markers",
                name=f"η = {lr:g}",
                line={"color": hex_of[lr]},
                showlegend=False,
            ),
            1,
            3,
        )
        sgd = [r for r in rows if result.optimizer[r] == "sgd"]
        if sgd:
            ax_bar.plot(result.batch_size[sgd], result.barrier[sgd], "s-", color=color_of[lr], label=f"η = {lr:g}")
            inter.add_trace(
                go.Scatter(
                    x=result.batch_size[sgd],
                    y=result.barrier[sgd],
                    mode="lines+markers",
                    line={"color": hex_of[lr]},
                    showlegend=False,
                ),
                1,
                4,
            )
    ax_ratio.axhline(1.0, color="k", ls=":", lw=1)
    ax_ratio.set(xscale="log", xlabel="batch size (GD: all rows)", ylabel="λmax · η / 2")
    ax_ratio.legend(fontsize=8)
    ax_bar.set(xscale="log", xlabel="SGD batch size", ylabel="train-loss barrier to GD (same η)")
    for ax, sizes in ((ax_ratio, result.batch_size), (ax_bar, result.batch_size[np.array(result.optimizer) == "sgd"])):
        ticks = sorted({int(b) for b in sizes})  # label the batch sizes run, not log-axis minor ticks
        ax.minorticks_off()
        ax.set_xticks(ticks, [str(b) for b in ticks])
    if ax_bar.lines:
        ax_bar.legend(fontsize=8)
    for ax in (ax_loss, ax_sharp, ax_ratio, ax_bar):
        ax.grid(alpha=0.3)
    inter.update_xaxes(type="log", row=1, col=3)
    inter.update_xaxes(type="log", row=1, col=4)
    inter.update_yaxes(type="log", row=1, col=1)
    inter.update_layout(height=400, margin={"t": 40})
    cfg = result.config
    caption = (
        f"{cfg.get('model')} on {result.n_train} rows of {cfg.get('data')}, loss {cfg.get('loss')} "
        "(½‖f − y‖² averaged over examples, Cohen et al.'s 0.5·Σ/n), "
        f"{cfg.get('steps')} steps per run from one initialization. GD's λmax every "
        f"{cfg.get('track_every')} steps; 1 on the ratio axis is the stability threshold λmax = 2/η. "
        "Barrier: excess train loss on the straight line from the GD solution with the same η."
    )
    return [Figure("gd-vs-sgd", "GD versus SGD: sharpness against 2/η, and where they end", fig, inter, caption)]


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
