"""Random labels: training accuracy, time to fit, test accuracy and curvature against the corrupted fraction."""

from __future__ import annotations

import matplotlib
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.figures import Figure, draws, new_figure
from losslab.studies.random_labels import RandomLabelsResult

__all__: list[str] = []


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
