"""How each result type draws itself: a static PNG (matplotlib) and an interactive figure (plotly).

Drawing functions live in this package, one module per analysis (``report/train.py``,
…), and register with `draws`. Matplotlib figures are built with the object API
(``matplotlib.figure.Figure``), never pyplot, so nothing depends on a display or on
global state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib.figure
import plotly.graph_objects as go

__all__ = ["DRAWERS", "Figure", "draws", "figures_of", "new_figure"]


@dataclass
class Figure:
    """One picture of a result, in both forms (either may be None)."""

    slug: str  # file-name part: figures/<result>-<slug>.png
    title: str
    static: matplotlib.figure.Figure | None
    interactive: go.Figure | None
    caption: str = ""


DRAWERS: dict[str, list[Callable[[Any], list[Figure]]]] = {}


def draws(result_type: type) -> Callable[[Callable[[Any], list[Figure]]], Callable[[Any], list[Figure]]]:
    """Register ``fn(result) -> list[Figure]`` for results of ``result_type``."""

    def add(fn: Callable[[Any], list[Figure]]) -> Callable[[Any], list[Figure]]:
        DRAWERS.setdefault(result_type.__name__, []).append(fn)
        return fn

    return add


def figures_of(result: Any) -> list[Figure]:
    """Every figure registered for ``result``'s type (none for unknown types)."""
    return [fig for fn in DRAWERS.get(type(result).__name__, []) for fig in fn(result)]


def new_figure(width: float = 6.0, height: float = 4.0, ncols: int = 1) -> tuple[matplotlib.figure.Figure, Any]:
    """A matplotlib figure with ``ncols`` axes, laid out tightly."""
    fig = matplotlib.figure.Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes
