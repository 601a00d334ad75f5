"""Lazy regime: kernel and weight change against width (log–log, with the n^-1/2 anchor), and along training."""

from __future__ import annotations

import matplotlib.figure
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.report.figures import Figure, draws
from losslab.studies.lazy_regime import LazyRegimeResult

__all__: list[str] = []

_SERIES = (
    ("kernel_change", "‖Θ_T − Θ_0‖/‖Θ_0‖", "tab:blue"),
    ("weight_change", "‖θ_T − θ_0‖/‖θ_0‖", "tab:orange"),
    ("prediction_gap", "gap to linearized net", "tab:green"),
)


def _final(result: LazyRegimeResult, name: str) -> np.ndarray:
    values = getattr(result, name)
    return values[:, :, -1] if values.ndim == 3 else values


@draws(LazyRegimeResult)
def _lazy(result: LazyRegimeResult) -> list[Figure]:
    fig = matplotlib.figure.Figure(figsize=(11, 4), layout="constrained")
    ax_w, ax_t = fig.subplots(1, 2)
    inter = make_subplots(rows=1, cols=2, subplot_titles=("change vs width", "kernel change along training"))
    w = result.widths.astype(float)
    for name, label, color in _SERIES:
        values = _final(result, name)
        slope, err = result.slopes[name]
        mean = np.exp(np.nanmean(np.log(values), axis=1))
        ax_w.loglog(np.repeat(w, values.shape[1]), values.ravel(), ".", color=color, alpha=0.4)
        ax_w.loglog(w, mean, "-", color=color, label=f"{label}: slope {slope:.2f} ± {err:.2f}")
        inter.add_trace(go.Scatter(x=w, y=mean, mode="lines+markers", name=f"{label} ({slope:.2f})"), 1, 1)
    anchor = _final(result, "weight_change").mean(axis=1)[0] * (w / w[0]) ** -0.5
    ax_w.loglog(w, anchor, "k--", lw=1, label="width^-1/2")
    ax_w.set(xlabel="width", ylabel="relative change at step T")
    ax_w.legend(fontsize=7)
    ax_w.grid(alpha=0.3, which="both")
    cmap = matplotlib.colormaps["viridis"]
    for i, width in enumerate(result.widths):
        curve = result.kernel_change[i].mean(axis=0)
        ax_t.plot(result.steps, curve, "o-", ms=3, color=cmap(i / max(1, len(w) - 1)), label=f"width {width}")
        inter.add_trace(go.Scatter(x=result.steps, y=curve, mode="lines+markers", name=f"width {width}"), 1, 2)
    ax_t.set(xlabel="GD step", ylabel="‖Θ_t − Θ_0‖/‖Θ_0‖")
    ax_t.set_yscale("symlog", linthresh=1e-3)
    ax_t.legend(fontsize=7)
    ax_t.grid(alpha=0.3)
    inter.update_xaxes(type="log", row=1, col=1)
    inter.update_yaxes(type="log", row=1, col=1)
    cfg = result.config
    caption = (
        f"One-hidden-layer {cfg.get('act')} network in the NTK parametrization on {cfg.get('data')} "
        f"({result.n_train} training rows), full-batch GD, lr {cfg.get('lr')}, {cfg.get('steps')} steps, "
        f"output scale {cfg.get('output_scale')}, {len(result.seeds)} seeds per width. Slopes: least squares "
        "of log(change) on log(width) over every point, ± standard error. Gap: RMS of the trained network's "
        "test predictions minus the linearized network's (Lee et al. 2019), over RMS of its own movement."
    )
    return [Figure("lazy-regime", "Lazy regime: change against width", fig, inter, caption)]
