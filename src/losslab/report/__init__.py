"""Figures (static PNG and interactive plotly) of every result type, and the HTML report."""

from losslab.report import train as _train  # noqa: F401  (registers the drawings)
from losslab.report.figures import DRAWERS, Figure, draws, figures_of, new_figure
from losslab.report.html import Section, render_report, write_report

__all__ = ["DRAWERS", "Figure", "Section", "draws", "figures_of", "new_figure", "render_report", "write_report"]
