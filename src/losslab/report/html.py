"""The self-contained HTML report of a run: metadata, headline numbers, figures.

One file, no network: plotly.js is inlined once and static figures are embedded as
base64 PNGs. Every user-supplied string (commands, configs, names) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from losslab._io import atomic_write
from losslab.report.figures import Figure, figures_of

__all__ = ["Section", "render_report", "write_report"]


@dataclass
class Section:
    """One run's part of a report: its manifest and result objects."""

    title: str
    manifest: dict[str, Any]
    results: dict[str, Any]
    figures: list[tuple[str, Figure]] = field(default_factory=list)
    key: str = ""  # prefixes figure file names, so sections of one report never overwrite each other's


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.5rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top;font-size:.9rem}
th{background:#f5f5f5}code,pre{font-size:.85rem}.fig{margin:1.5rem 0}.caption{color:#555;font-size:.9rem}
details{margin:.5rem 0}img{max-width:100%}.status-complete{color:#185}.status-failed{color:#b22}
"""


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        rows: list[tuple[str, Any]] = []
        for k, v in value.items():
            rows.extend(_flatten(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
        return rows
    return [(prefix.rstrip("."), value)]


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return json.dumps(list(value[:8]), default=str)[:-1] + ", …]"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _table(rows: Sequence[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_format(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _png(fig: Figure, path: Path | None) -> str:
    assert fig.static is not None
    buffer = io.BytesIO()
    fig.static.savefig(buffer, format="png", dpi=110)
    data = buffer.getvalue()
    if path is not None:
        atomic_write(path, lambda f: f.write(data))
    return base64.b64encode(data).decode()


def _section_html(section: Section, figure_dir: Path | None, first_plot: list[bool]) -> str:
    m = section.manifest
    status = html.escape(str(m.get("status")))
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    wall = m.get("wall_seconds")
    wall_text = f"{wall:.4g} s" if isinstance(wall, (int, float)) else "not recorded"
    parts.append(
        f"<p>status: <b class='status-{status}'>{status}</b>"
        f" · wall time: {html.escape(wall_text)}"
        f" · device: {html.escape(str(m.get('device')))} · dtype: {html.escape(str(m.get('dtype')))}</p>"
    )
    if m.get("error"):
        parts.append(f"<p class='status-failed'>error: {html.escape(str(m['error']))}</p>")
    if m.get("result"):
        parts.append("<h3>Headline numbers</h3>" + _table(_flatten(m["result"])))
    figures = section.figures or [(name, fig) for name, result in section.results.items() for fig in figures_of(result)]
    for name, fig in figures:
        parts.append(f"<div class='fig'><h3>{html.escape(fig.title)}</h3>")
        if fig.interactive is not None:
            include = "inline" if first_plot[0] else False
            first_plot[0] = False
            parts.append(
                fig.interactive.to_html(full_html=False, include_plotlyjs=include, config={"displaylogo": False})
            )
        if fig.static is not None:
            stem = f"{section.key}-{name}-{fig.slug}" if section.key else f"{name}-{fig.slug}"
            path = figure_dir / f"{stem}.png" if figure_dir is not None else None
            png = _png(fig, path)
            alt = html.escape(fig.title)
            img = f"<img alt='{alt}' src='data:image/png;base64,{png}'>"
            parts.append(
                img if fig.interactive is None else f"<details><summary>static figure</summary>{img}</details>"
            )
        if fig.caption:
            parts.append(f"<p class='caption'>{html.escape(fig.caption)}</p>")
        parts.append("</div>")
    meta_rows = [
        ("command", m.get("command")),
        ("argv", " ".join(map(str, m.get("argv") or []))),
        ("started", m.get("started")),
        ("ended", m.get("ended")),
        ("seeds", m.get("seeds")),
        *(("config." + k, v) for k, v in _flatten(m.get("config") or {})),
        *(("versions." + k, v) for k, v in (m.get("versions") or {}).items()),
    ]
    parts.append("<details><summary>run metadata</summary>" + _table(meta_rows) + "</details>")
    return "\n".join(parts)


def render_report(title: str, sections: Sequence[Section], figure_dir: Path | None = None) -> str:
    """The report as one HTML string (``figure_dir``: also save each static figure there)."""
    first_plot = [True]
    body = "\n".join(_section_html(s, figure_dir, first_plot) for s in sections)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def write_report(path: Path, title: str, sections: Sequence[Section], figure_dir: Path | None = None) -> Path:
    """Write ``report.html`` atomically (and the static figures, when ``figure_dir`` is given)."""
    text = render_report(title, sections, figure_dir)
    return atomic_write(path, lambda f: f.write(text.encode()))
