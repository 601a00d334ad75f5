"""Figures of loss surfaces: contours and 3-D views of planes; curves of lines and interpolations.

A plane is drawn with a along the x axis and b along the y axis: ``loss[i, j]`` is the
value at (a[i], b[j]), so the arrays are transposed for matplotlib and plotly, which
both index z[row = y, column = x].

How the loss axis is drawn (linear, log, or 'auto': log when the values span over two
decades) is a drawing choice, not part of a result: `loss_scale` sets it for the figures
drawn inside it (``losslab surface --scale`` wraps its report in it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from losslab.errors import check_choice
from losslab.report.figures import Figure, draws, new_figure
from losslab.surface import Interpolation, Line, Surface

__all__ = ["SCALES", "VTS_NAME", "loss_scale", "write_vts"]

SCALES = ("auto", "linear", "log")
VTS_NAME = "surface.vts"  # a surface run's plane for ParaView, in its figures folder (`write_vts`)
_SCALE: ContextVar[str] = ContextVar("loss_scale", default="auto")


@contextmanager
def loss_scale(scale: str, owner: str = "surface") -> Iterator[None]:
    """Draw the loss of surfaces, lines and interpolations on ``scale`` inside this block."""
    token = _SCALE.set(check_choice(scale, "scale", owner, SCALES))
    try:
        yield
    finally:
        _SCALE.reset(token)


def _log_scale(scale: str, *arrays: np.ndarray | None) -> bool:
    """Log scale when asked (and possible), or under 'auto' when values span over two decades."""
    values = np.concatenate([np.ravel(v) for v in arrays if v is not None])
    values = values[np.isfinite(values)]
    if scale == "linear" or len(values) == 0 or values.min() <= 0:
        return False
    return scale == "log" or values.max() / values.min() > 100.0


# A snapshot closer to the plane than this, relative to ‖θ‖, is on it: float32 snapshots carry ~1e-7 relative rounding.
_ON_PLANE = 1e-5


def _axis_label(name: str, kind: str) -> str:
    return f"{name} (along {kind})"


@draws(Surface)
def _surface(result: Surface) -> list[Figure]:
    kinds = result.directions.kind
    log = _log_scale(_SCALE.get(), result.loss, result.test_loss)
    panels = [("train", result.loss)]
    if result.test_loss is not None:
        panels.append(("test", result.test_loss))
    traj = result.trajectory
    figures = []
    for split, values in panels:
        Z = np.ma.masked_invalid(np.log10(values.T) if log else values.T)
        fig, ax = new_figure(6.2, 5.0)
        filled = ax.contourf(result.a, result.b, Z, levels=30, cmap="viridis")
        ax.contour(result.a, result.b, Z, levels=12, colors="k", linewidths=0.4, alpha=0.6)
        fig.colorbar(filled, ax=ax, label=f"log10 {split} loss" if log else f"{split} loss")
        if result.a[0] <= 0 <= result.a[-1] and result.b[0] <= 0 <= result.b[-1]:
            ax.plot([0], [0], "w+", ms=12, mew=2, label="θ")
        if traj is not None:
            ax.plot(traj.coords[:, 0], traj.coords[:, 1], "-", color="tab:red", lw=1.2)
            ax.plot(traj.coords[:, 0], traj.coords[:, 1], "o", color="tab:red", ms=2.5)
            # A snapshot off the plane is drawn where it projects, hollow, and says how far off it is: a filled
            # "start" on top of θ would claim the run started at θ (issue 16: the start was 5.2 off the plane).
            off = float(traj.residual[0])
            if off > _ON_PLANE * max(1.0, float(np.linalg.norm(np.asarray(result.theta, dtype=float)))):
                label = f"start (projection; {off:.3g} off the plane)"
                ax.plot(traj.coords[:1, 0], traj.coords[:1, 1], "s", mfc="none", mec="tab:orange", mew=1.5, ms=8,
                        label=label)  # fmt: skip
            else:
                ax.plot(traj.coords[:1, 0], traj.coords[:1, 1], "s", color="tab:orange", ms=6, label="start")
            ax.set(xlim=(result.a[0], result.a[-1]), ylim=(result.b[0], result.b[-1]))
        ax.set(xlabel=_axis_label("a", kinds[0]), ylabel=_axis_label("b", kinds[1]))
        ax.legend(loc="upper right", fontsize=8)
        z_axis = _z_axis(values, log, f"{split} loss")
        inter = go.Figure(
            go.Surface(
                x=result.a,
                y=result.b,
                z=z_axis.transform(values.T),
                customdata=values.T,
                hovertemplate=f"a %{{x:.3g}}, b %{{y:.3g}}<br>{split} loss %{{customdata:.4g}}<extra></extra>",
                colorscale="Viridis",
                name=f"{split} loss",
                colorbar={"title": {"text": z_axis.title}, **z_axis.ticks},
            )
        )
        if traj is not None and np.isfinite(traj.loss).any():
            inter.add_trace(
                go.Scatter3d(
                    x=traj.coords[:, 0],
                    y=traj.coords[:, 1],
                    z=z_axis.transform(traj.loss),
                    mode="lines+markers",
                    line={"color": "red", "width": 5},
                    marker={"size": 3, "color": "red"},
                    text=[f"step {s}" for s in traj.steps],
                    name=f"trajectory (projected; up to {float(np.max(traj.residual)):.3g} off the plane)",
                )
            )
        inter.update_layout(
            height=560,
            margin={"t": 30, "l": 0, "r": 0, "b": 0},
            scene={
                "xaxis_title": "a",
                "yaxis_title": "b",
                "zaxis": {"title": {"text": z_axis.title}, **z_axis.ticks},
                "aspectmode": "cube",  # a PCA plane can be 4x longer than wide: plotly then hides the z axis
            },
        )
        i, j = np.unravel_index(int(np.nanargmin(values)), values.shape)
        caption = (
            f"{split.capitalize()} loss on the plane θ + a·d₁ + b·d₂ "
            f"(d₁: {kinds[0]}, d₂: {kinds[1]}), "
            f"{len(result.a)}×{len(result.b)} points; minimum {values[i, j]:.4g} at "
            f"(a, b) = ({result.a[i]:.3g}, {result.b[j]:.3g})."
        )
        if result.directions.explained_variance is not None:
            shares = ", ".join(f"{100 * v:.1f} %" for v in result.directions.explained_variance)
            caption += f" PCA components explain {shares} of the trajectory's variance."
        if traj is not None:
            caption += (
                f" The trajectory ({len(traj.steps)} snapshots) is projected onto the plane; its "
                f"largest distance off the plane is {np.max(traj.residual):.3g}."
            )
        # the kinds in the file name keep a filter plane and a PCA plane apart in one report folder
        slug = re.sub(r"[^a-z0-9]+", "-", f"{split}-surface-{kinds[0].split()[0]}-{kinds[1].split()[0]}".lower())
        figures.append(Figure(slug, f"{split.capitalize()} loss surface", fig, inter, caption))
        figures.append(_static_3d(result, split, values, z_axis, kinds, slug))
    return figures


@dataclass(frozen=True)
class _ZAxis:
    """How a 3-D view draws the loss. On a log scale it draws log10(loss) on a linear axis with ticks at whole
    decades labelled 10ᵏ: plotly's own log axis in a 3-D scene labels every 2 and 5 between decades ("2 1 5 2 0.1
    5 …", the garbled ticks of issue 16) and colours linearly in the loss. ``decades`` is None where the values
    span less than two decades: then the ticks are plain log10 values."""

    log: bool
    title: str
    decades: np.ndarray | None

    def transform(self, values: np.ndarray) -> np.ndarray:
        if not self.log:
            return values
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log10(values)

    @property
    def ticks(self) -> dict[str, Any]:
        """Plotly axis (or colour bar) tick settings: decades as 10ᵏ, else powers of ten, never SI prefixes."""
        if self.decades is not None:
            return {"tickvals": self.decades.tolist(), "ticktext": [f"10<sup>{k}</sup>" for k in self.decades]}
        return {"exponentformat": "power", "tickformat": ".3g" if self.log else "", "nticks": 6}


def _z_axis(values: np.ndarray, log: bool, name: str) -> _ZAxis:
    if not log:
        return _ZAxis(False, name, None)
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.size == 0:  # a panel with no finite loss (a diverged test split): nothing to place decades on
        return _ZAxis(True, f"log10 {name}", None)
    lo, hi = np.log10(finite.min()), np.log10(finite.max())
    decades = np.arange(np.ceil(lo - 1e-9), np.floor(hi + 1e-9) + 1).astype(int)
    if len(decades) < 2:
        return _ZAxis(True, f"log10 {name}", None)
    return _ZAxis(True, f"{name} (log scale)", decades)


def _static_3d(result: Surface, split: str, values: np.ndarray, z_axis: _ZAxis, kinds: list[str], slug: str) -> Figure:
    """The 3-D view as a PNG, for papers and for readers without JavaScript."""
    import matplotlib.figure
    from matplotlib.ticker import FixedLocator, FuncFormatter

    fig = matplotlib.figure.Figure(figsize=(6.4, 5.0), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    A, B = np.meshgrid(result.a, result.b)
    Z = np.ma.masked_invalid(z_axis.transform(values.T))
    ax.plot_surface(A, B, Z, cmap="viridis", linewidth=0, antialiased=True)
    ax.set(xlabel="a", ylabel="b", zlabel=z_axis.title)
    if z_axis.decades is not None:
        ax.zaxis.set_major_locator(FixedLocator(z_axis.decades))
        ax.zaxis.set_major_formatter(FuncFormatter(lambda v, _: f"$10^{{{round(v)}}}$"))
    else:  # plain short numbers: the default offset notation printed garbled z ticks (issue 16)
        ax.zaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.view_init(elev=30, azim=-60)
    caption = f"The {split} loss of the plane above as a 3-D surface (d₁: {kinds[0]}, d₂: {kinds[1]})."
    return Figure(f"{slug}-3d", f"{split.capitalize()} loss surface, 3-D (static)", fig, None, caption)


def _curves(
    alphas: np.ndarray, result: Any, xlabel: str, log: bool, marks: list[tuple[float, str]]
) -> tuple[Any, go.Figure]:
    has_acc = result.accuracy is not None
    fig, axes = new_figure(10 if has_acc else 5.5, 3.8, ncols=2 if has_acc else 1)
    ax_loss, ax_acc = (axes[0], axes[1]) if has_acc else (axes, None)
    inter = make_subplots(
        rows=1,
        cols=2 if has_acc else 1,
        subplot_titles=("loss", "accuracy") if has_acc else ("loss",),
    )
    for key, label, style in (("loss", "train", "-"), ("test_loss", "test", "--")):
        values = getattr(result, key)
        if values is not None:
            ax_loss.plot(alphas, values, style, label=label)
            inter.add_trace(go.Scatter(x=alphas, y=values, name=f"{label} loss", mode="lines"), 1, 1)
    for key, label, style in (("accuracy", "train", "-"), ("test_accuracy", "test", "--")):
        values = getattr(result, key)
        if values is not None and ax_acc is not None:
            ax_acc.plot(alphas, values, style, label=label)
            inter.add_trace(go.Scatter(x=alphas, y=values, name=f"{label} accuracy", mode="lines"), 1, 2)
    for x, text in marks:
        ax_loss.axvline(x, color="0.6", lw=0.8, ls=":")
        ax_loss.annotate(text, (x, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=8)
    ax_loss.set(xlabel=xlabel, ylabel="loss", yscale="log" if log else "linear")
    inter.update_yaxes(type="log" if log else "linear", row=1, col=1)
    for ax in (ax_loss, ax_acc):
        if ax is not None:
            ax.grid(alpha=0.3)
            ax.legend()
    if ax_acc is not None:
        ax_acc.set(xlabel=xlabel, ylabel="accuracy")
    inter.update_xaxes(title_text=xlabel)
    inter.update_layout(height=380, margin={"t": 40})
    return fig, inter


@draws(Line)
def _line(result: Line) -> list[Figure]:
    log = _log_scale(_SCALE.get(), result.loss, result.test_loss)
    marks = [(0.0, "θ")] if result.alphas[0] <= 0 <= result.alphas[-1] else []
    fig, inter = _curves(result.alphas, result, f"α (along {result.directions.kind[0]})", log, marks)
    lo, hi = result.alphas[0], result.alphas[-1]
    caption = f"Loss along θ + α·d for {len(result.alphas)} values of α in [{lo:g}, {hi:g}]."
    return [Figure("line", "Loss along a line", fig, inter, caption)]


@draws(Interpolation)
def _interpolation(result: Interpolation) -> list[Figure]:
    log = _log_scale(_SCALE.get(), result.loss, result.test_loss)
    marks = [
        (x, text)
        for x, text in ((0.0, result.labels[0]), (1.0, result.labels[1]))
        if result.alphas[0] <= x <= result.alphas[-1]
    ]
    fig, inter = _curves(result.alphas, result, "α", log, marks)
    if not result.monotone and result.bump > result.tolerance:
        fig.axes[0].axvspan(result.bump_from, result.bump_alpha, color="tab:red", alpha=0.15, label="largest bump")
        fig.axes[0].legend()
    verdict = (
        "monotone (MLI holds)"
        if result.monotone
        else f"not monotone: the largest bump rises {result.bump:.3g} "
        f"from α = {result.bump_from:g} "
        f"to α = {result.bump_alpha:g}"
    )
    caption = (
        f"Train loss along (1 − α)·θ_a + α·θ_b from {result.labels[0]} (α = 0) "
        f"to {result.labels[1]} "
        f"(α = 1), ‖θ_b − θ_a‖ = {result.distance:.4g}: {verdict}."
    )
    return [Figure("interpolation", "Linear interpolation", fig, inter, caption)]


def write_vts(result: Surface, path: Any) -> Any:
    """Write a plane as a VTK structured grid (``.vts``, XML, ASCII) for ParaView.

    Points are (a, b, train loss) so the grid is the surface itself; every computed field (train_loss,
    train_accuracy, test_loss, test_accuracy) is a named point array, and the direction kinds are stored as
    field data (``d1_kind``, ``d2_kind``). Point order is VTK's: a varies fastest, then b.
    """
    from pathlib import Path

    from losslab._io import atomic_write

    na, nb = len(result.a), len(result.b)
    A, B = np.meshgrid(result.a, result.b)  # [nb, na]: a fastest when raveled
    fields = {"train_loss": result.loss, "train_accuracy": result.accuracy, "test_loss": result.test_loss,
              "test_accuracy": result.test_accuracy}  # fmt: skip
    points = np.stack([A.ravel(), B.ravel(), result.loss.T.ravel()], 1)

    def numbers(values: np.ndarray) -> str:
        return " ".join(repr(float(v)) for v in np.ravel(values))

    extent = f"0 {na - 1} 0 {nb - 1} 0 0"
    arrays = "".join(
        f'<DataArray type="Float64" Name="{name}" format="ascii">{numbers(v.T)}</DataArray>'
        for name, v in fields.items()
        if v is not None
    )
    kinds = "".join(
        f'<DataArray type="String" Name="{name}" NumberOfTuples="1" format="ascii">'
        + " ".join(str(b) for b in kind.encode())
        + " 0</DataArray>"
        for name, kind in (("d1_kind", result.directions.kind[0]), ("d2_kind", result.directions.kind[1]))
    )
    text = (
        '<?xml version="1.0"?>\n<VTKFile type="StructuredGrid" version="1.0" byte_order="LittleEndian">'
        f'<StructuredGrid WholeExtent="{extent}"><FieldData>{kinds}</FieldData><Piece Extent="{extent}">'
        f'<PointData Scalars="train_loss">{arrays}</PointData>'
        f'<Points><DataArray type="Float64" NumberOfComponents="3" format="ascii">{numbers(points)}</DataArray>'
        "</Points></Piece></StructuredGrid></VTKFile>\n"
    )
    return atomic_write(Path(path), lambda f: f.write(text.encode()))
