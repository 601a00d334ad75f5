"""Figures (static PNG and interactive plotly) of every result type, and the HTML report."""

from losslab.report import connectivity as _connectivity  # noqa: F401
from losslab.report import curvature as _curvature  # noqa: F401
from losslab.report import exact as _exact  # noqa: F401
from losslab.report import ntk as _ntk  # noqa: F401
from losslab.report import studies as _studies  # noqa: F401  (registers the drawings)
from losslab.report import surface as _surface  # noqa: F401
from losslab.report import train as _train  # noqa: F401
from losslab.report.figures import DRAWERS, Figure, draws, figures_of, new_figure
from losslab.report.html import Section, render_report, write_report

__all__ = ["DRAWERS", "Figure", "Section", "draws", "figures_of", "new_figure", "render_report", "write_report"]
