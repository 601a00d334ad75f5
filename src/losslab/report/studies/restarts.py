"""Restarts: the final loss of every restart, and the barriers between pairs before and after alignment."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from matplotlib import ticker
from plotly.subplots import make_subplots

from losslab.report.figures import Figure, draws, new_figure
from losslab.studies.restarts import RestartsResult

__all__: list[str] = []


def _log_loss(loss: np.ndarray) -> np.ndarray:
    """log10 of final losses; exact zeros (reached in float64) sit at 1e-16, infinities are dropped."""
    finite = loss[np.isfinite(loss)]
    return np.log10(np.maximum(finite, 1e-16))


def _barrier_scale(ax: Any, which: str, target: float, heights: np.ndarray) -> None:
    """Barriers span decades across problems (1e-3 for the teacher, 1 for XOR): symlog, linear below the
    target loss, where a barrier no longer matters. Ticks are 0 and at most three decades at or above the
    target on each side of it (a decade inside the linear part would sit on top of 0); a panel with fewer than
    two such decades is linear, with a few short ticks (symlog's own locator labels only the limits there, as
    "-1.68151×10⁻³"). A barrier is negative where the path dips below the line between its ends."""
    linthresh, axis, set_scale = max(target, 1e-12), getattr(ax, f"{which}axis"), getattr(ax, f"set_{which}scale")
    low = int(np.ceil(np.log10(linthresh) - 1e-9))  # the first decade at or above the target
    tops = {
        sign: int(np.floor(np.log10(max([sign * float(h) for h in heights] + [1e-300])) + 1e-9)) for sign in (1, -1)
    }
    stride = int(np.ceil(sum(max(0, high - low + 1) for high in tops.values()) / 3))
    ticks = [0.0]
    for sign, high in tops.items():
        if high >= low:
            # 0 sits one decade below linthresh (linscale 1): a decade much closer to it than the stride is dropped
            keep = [k for k in range(high, low - 1, -stride) if k - np.log10(linthresh) + 1 >= 0.75 * stride]
            ticks += [sign * 10.0**k for k in keep]
    if len(ticks) < 3:
        set_scale("linear")
        axis.set_major_locator(ticker.MaxNLocator(4))
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v + 0.0:.2g}"))
        return
    set_scale("symlog", linthresh=linthresh)
    axis.set_major_locator(ticker.FixedLocator(sorted(ticks)))
    axis.set_major_formatter(
        ticker.FuncFormatter(
            lambda v, _: "0" if v == 0 else f"${'-' if v < 0 else ''}10^{{{round(np.log10(abs(v)))}}}$"
        )
    )
    axis.set_minor_locator(ticker.NullLocator())


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
            for which in "xy":
                _barrier_scale(ax, which, p.target_loss, heights)
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
