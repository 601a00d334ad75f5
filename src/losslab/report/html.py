"""The self-contained HTML report of a run: navigation, headline numbers, figures, tables.

One file, no network: plotly.js is inlined once and static figures are embedded as
base64 PNGs. Interactive figures are stored as JSON and drawn only when they scroll
into view (an IntersectionObserver), so a report with twenty figures opens as fast as
one with none. Every user-supplied string (commands, configs, names) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from losslab._io import atomic_write
from losslab.report.figures import Figure, figures_of

__all__ = [
    "HEADLINES",
    "Section",
    "figure_stem",
    "format_value",
    "headline",
    "provenance",
    "render_report",
    "write_report",
]


@dataclass
class Section:
    """One run's part of a report: its manifest and result objects."""

    title: str
    manifest: dict[str, Any]
    results: dict[str, Any]
    figures: list[tuple[str, Figure]] = field(default_factory=list)
    key: str = ""  # prefixes figure file names, so sections of one report never overwrite each other's


_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#222}
nav{position:fixed;top:0;left:0;bottom:0;width:15rem;overflow-y:auto;background:#f7f7f7;border-right:1px solid #ddd;
padding:1rem .8rem;font-size:.85rem}
nav a{color:#245;text-decoration:none;display:block;padding:.15rem 0}nav a:hover{text-decoration:underline}
nav ol{padding-left:1.1rem;margin:.2rem 0}nav ol ol a{color:#567}.nav-title{font-weight:700;margin:0}
main{margin-left:15rem;padding:1rem 2rem;max-width:1150px}
@media (max-width:800px){nav{position:static;width:auto;border-right:0}main{margin-left:0}}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.5rem}
table{border-collapse:collapse;margin:.3rem 0 1rem}caption{text-align:left;font-weight:600;padding:.2rem 0}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top;font-size:.9rem}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f5f5f5;font-weight:500}code,pre{font-size:.85rem}
.fig{margin:1.5rem 0}.caption{color:#555;font-size:.9rem}
details{margin:.5rem 0}img{max-width:100%}.status-complete{color:#185}.status-failed{color:#b22}
.headline{display:flex;flex-wrap:wrap;gap:.6rem;margin:.6rem 0 1rem;padding:0;list-style:none}
.headline li{background:#eef4fa;border:1px solid #cfdfee;border-radius:6px;padding:.4rem .7rem}
.headline .label{display:block;font-size:.75rem;color:#456}.headline .value{font-size:1.15rem;font-weight:600}
.lazy-plot{width:100%;background:#fafafa}.lazy-plot[data-rendered='1']{background:none}
"""

# Draws each interactive figure once it comes within a screen of the viewport, and counts them, so a test
# (or a curious reader) can see how many were drawn: window.losslabReport = {total, rendered}.
_LOADER = """
(function(){
  var plots = document.querySelectorAll('.lazy-plot');
  var state = window.losslabReport = {total: plots.length, rendered: 0, errors: []};
  var templates = JSON.parse(document.getElementById('plot-templates').textContent);
  function draw(div){
    if (div.dataset.rendered) return;
    div.dataset.rendered = '1';
    try {
      var spec = JSON.parse(document.getElementById(div.dataset.spec).textContent);
      if (spec.template !== null) spec.figure.layout.template = templates[spec.template];
      div.style.height = '';
      Plotly.newPlot(div, spec.figure.data, spec.figure.layout, {displaylogo: false, responsive: true});
      state.rendered += 1;
    } catch (e) { state.errors.push(String(e)); throw e; }
  }
  if (!('IntersectionObserver' in window)) { plots.forEach(draw); return; }
  var seen = new IntersectionObserver(function(entries){
    entries.forEach(function(e){ if (e.isIntersecting) { seen.unobserve(e.target); draw(e.target); } });
  }, {rootMargin: '200px 0px'});
  plots.forEach(function(div){ seen.observe(div); });
})();
"""


# ---------------------------------------------------------------------------------------------- numbers in words
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def format_value(value: Any, digits: int = 4) -> str:
    """A value as a reader wants it: floats to ``digits`` significant digits (−0.05, not -0.0499999999999993),
    10⁻⁵ instead of 1e-05, None as "not computed", booleans as yes/no, short lists as tuples."""
    if value is None:
        return "not computed"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ") if abs(value) >= 10_000 else str(value).replace("-", "−")
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        text = f"{value:.{digits}g}"
        if "e" in text:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}×10{str(int(exponent)).translate(_SUPERSCRIPT)}"
            text = text.removeprefix("1×")
        if text in ("-0", "0"):
            text = "0"
        return text.replace("-", "−")
    if isinstance(value, (list, tuple)):
        items = list(value)
        if len(items) > 8:
            shown = ", ".join(format_value(v, digits) for v in items[:5])
            return f"({shown}, … {len(items)} values)"
        return "(" + ", ".join(format_value(v, digits) for v in items) + ")"
    if isinstance(value, dict):
        return ", ".join(f"{_words(k)}: {format_value(v, digits)}" for k, v in value.items())
    return str(value)


def _words(key: Any) -> str:
    return str(key).replace("_", " ")


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict) and not (isinstance(value, (list, tuple)) and len(value) > 8)


def _cell(value: Any) -> str:
    num = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"<td{' class=num' if num else ''}>{html.escape(format_value(value))}</td>"


def _key_value_table(rows: Sequence[tuple[str, Any]], caption: str = "") -> str:
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    body = "".join(
        f"<tr><th title='{html.escape(str(k), quote=True)}'>{html.escape(_words(k))}</th>{_cell(v)}</tr>"
        for k, v in rows
    )
    return f"<table>{cap}{body}</table>"


def _matrix_table(rows: dict[str, dict[str, Any]], caption: str = "") -> str:
    columns: list[str] = []
    for inner in rows.values():
        columns.extend(c for c in inner if c not in columns)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(_words(c))}</th>" for c in columns) + "</tr>"
    body = "".join(
        f"<tr><th title='{html.escape(str(k), quote=True)}'>{html.escape(_words(k))}</th>"
        + "".join(_cell(inner.get(c)) if c in inner else "<td></td>" for c in columns)
        + "</tr>"
        for k, inner in rows.items()
    )
    return f"<table>{cap}{head}{body}</table>"


def _caption(outer: str, inner: str) -> str:
    return f"{outer} › {inner}" if outer else inner


def result_tables(result: dict[str, Any], caption: str = "") -> str:
    """A nested result as grouped tables: the scalars in one table, a dict of like dicts as one matrix
    (rows: outer keys, columns: inner keys), anything deeper as its own captioned group."""
    scalars = [(k, v) for k, v in result.items() if _is_scalar(v)]
    groups = [(k, v) for k, v in result.items() if not _is_scalar(v)]
    parts = [_key_value_table(scalars, caption)] if scalars else []
    # Sibling dicts whose values are all scalars (A and B of connect: their losses and errors) read best as one matrix.
    alike: dict[tuple[str, ...], dict[str, Any]] = {}
    for k, v in groups:
        if isinstance(v, dict) and v and all(_is_scalar(x) for x in v.values()):
            alike.setdefault(tuple(v), {})[k] = v
    for flat in alike.values():
        if len(flat) >= 2:
            parts.append(_matrix_table(flat, _caption(caption, " · ".join(_words(k) for k in flat))))
            groups = [(k, v) for k, v in groups if k not in flat]
    for k, v in groups:
        name = _caption(caption, _words(k))
        if (
            isinstance(v, dict)
            and v
            and all(isinstance(x, dict) and all(map(_is_scalar, x.values())) for x in v.values())
        ):
            parts.append(_matrix_table(v, name))
        elif isinstance(v, dict):
            parts.append(result_tables(v, name))
        else:
            parts.append(_key_value_table([(k, v)], caption))
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- headline numbers
def _get(d: Any, *path: str | int) -> Any:
    for p in path:
        if isinstance(d, dict) and p in d:
            d = d[p]
        elif isinstance(d, (list, tuple)) and isinstance(p, int) and -len(d) <= p < len(d):
            d = d[p]
        else:
            return None
    return d


def _arrow(a: Any, b: Any) -> str | None:
    return None if a is None or b is None else f"{format_value(a, 3)} → {format_value(b, 3)}"


def _train_headline(r: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("test accuracy", r.get("test_accuracy")),
        ("train accuracy", r.get("train_accuracy")),
        ("train loss", r.get("train_loss")),
        ("steps", r.get("steps")),
    ]


def _connect_headline(r: dict[str, Any]) -> list[tuple[str, Any]]:
    r = r.get("barrier") or {}  # ConnectResult.summary: barrier[path][curve][definition]
    return [
        (
            "barrier (train loss) naive → aligned",
            _arrow(_get(r, "naive", "train_loss", "linear"), _get(r, "aligned", "train_loss", "linear")),
        ),
        (
            "barrier (test error) naive → aligned",
            _arrow(_get(r, "naive", "test_error", "linear"), _get(r, "aligned", "test_error", "linear")),
        ),
    ]


def _hessian_headline(r: dict[str, Any]) -> list[tuple[str, Any]]:
    saddle = r.get("saddle") or {}
    fraction = saddle.get("fraction")
    return [
        ("λmax", _get(r, "top", "eigenvalues", 0)),
        ("λmin", _get(r, "bottom", "eigenvalues", 0)),
        ("trace", _get(r, "trace", "estimate")),
        ("saddle index", None if fraction is None else f"{format_value(fraction, 3)} ({saddle.get('verdict')})"),
    ]


def _exact_headline(r: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("certified optimum", r.get("optimum")),
        ("certified", r.get("certified")),
        ("gap", r.get("gap")),
        ("median SGD gap", _get(r, "sgd", "gap_median")),
    ]


HEADLINES: dict[str, Callable[[dict[str, Any]], list[tuple[str, Any]]]] = {
    "train": _train_headline,
    "connect": _connect_headline,
    "hessian": _hessian_headline,
    "exact": _exact_headline,
}


def headline(manifest: dict[str, Any], limit: int = 5) -> list[tuple[str, str]]:
    """The few numbers a reader looks for first, as (label, text): per command where one is registered in
    `HEADLINES`, else the first scalar numbers of the result. Entries that were not computed are left out."""
    result = manifest.get("result")
    if not isinstance(result, dict):
        return []
    command = str(manifest.get("command") or "").split(" ")[0]
    rows = HEADLINES[command](result) if command in HEADLINES else []
    if not any(v is not None for _, v in rows):
        rows = list(_first_scalars(result))
    return [(_words(k), v if isinstance(v, str) else format_value(v)) for k, v in rows if v is not None][:limit]


_NOT_HEADLINES = ("wall_seconds", "invariants", "checks", "definitions", "units", "anchor")


def _first_scalars(result: dict[str, Any], prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Numbers, short words and short number lists of a summary, nested dicts named by their path."""
    for key, value in result.items():
        if key in _NOT_HEADLINES:
            continue
        label = f"{prefix}{key}"
        if isinstance(value, bool) or isinstance(value, (int, float)):
            yield label, value
        elif isinstance(value, str) and len(value) <= 24:
            yield label, value
        elif (
            isinstance(value, (list, tuple))
            and 0 < len(value) <= 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            yield label, ", ".join(format_value(v, 3) for v in value)
        elif isinstance(value, dict) and depth < 2:
            yield from _first_scalars(value, f"{label} · ", depth + 1)


def _headline_html(items: Sequence[tuple[str, str]]) -> str:
    if not items:
        return ""
    cells = "".join(
        f"<li><span class='label'>{html.escape(k)}</span><span class='value'>{html.escape(v)}</span></li>"
        for k, v in items
    )
    return f"<ul class='headline' aria-label='Headline numbers'>{cells}</ul>"


# ---------------------------------------------------------------------------------------------- figures
def figure_stem(key: str, name: str, slug: str) -> str:
    """A figure's file name without repeated parts: ``surface`` + ``surface-train`` + ``train-surface-filter-filter``
    → ``surface-train-filter``."""
    words: list[str] = []
    for part in (key, name, slug):
        for w in re.split(r"[-_\s]+", part):
            if w and w not in words:
                words.append(w)
    return "-".join(words) or "figure"


def _png(fig: Figure, path: Path | None) -> str:
    assert fig.static is not None
    buffer = io.BytesIO()
    fig.static.savefig(buffer, format="png", dpi=110)
    data = buffer.getvalue()
    if path is not None:
        atomic_write(path, lambda f: f.write(data))
    return base64.b64encode(data).decode()


def provenance(section: Section) -> str:
    """One line naming the run, its model and its data: what a PNG copied out of the report must carry."""
    m = section.manifest
    config = m.get("config") or {}
    run = section.key or str(m.get("command") or section.title)
    parts = [f"run: {run}"]
    if m.get("command") and str(m["command"]) != run:
        parts[0] += f" ({m['command']})"
    for name in ("model", "data"):
        if config.get(name):
            parts.append(f"{name}: {config[name]}")
    return " · ".join(parts)


def _stamp(fig: Figure, section: Section) -> None:
    assert fig.static is not None
    line = provenance(section)
    current = fig.static.get_suptitle()
    if line in current:  # a figure drawn into two reports is stamped once
        return
    fig.static.suptitle(f"{current}\n{line}" if current else line, fontsize=8, color="0.3")


def _script_json(text: str) -> str:
    # JSON inside <script> must not close the tag: "</" and "<!--" are escaped (still the same JSON).
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _power_exponents(template: dict[str, Any]) -> None:
    """Axis and colour-bar numbers as powers of ten (10⁻⁵) in every interactive figure, never plotly's default SI
    prefixes ("10µ" for an eigenvalue of 1e-5, issue 16). Set in the shared template, so a figure's own
    ``exponentformat`` still wins."""
    layout = template.setdefault("layout", {})
    for name in ("xaxis", "yaxis"):  # a template's xaxis applies to xaxis2, xaxis3, …
        layout.setdefault(name, {}).setdefault("exponentformat", "power")
    for name in ("xaxis", "yaxis", "zaxis"):
        layout.setdefault("scene", {}).setdefault(name, {}).setdefault("exponentformat", "power")
    layout.setdefault("coloraxis", {}).setdefault("colorbar", {}).setdefault("exponentformat", "power")
    for kind, entries in template.setdefault("data", {}).items():
        for entry in entries:
            if "colorbar" in entry:
                entry["colorbar"].setdefault("exponentformat", "power")
            if kind.startswith("scatter"):  # markers coloured by a value
                entry.setdefault("marker", {}).setdefault("colorbar", {}).setdefault("exponentformat", "power")


class _Plots:
    """The interactive figures of a report: their JSON specs, sharing one copy of each plotly template."""

    def __init__(self) -> None:
        self.templates: list[Any] = []
        self.count = 0

    def placeholder(self, fig: Any) -> str:
        spec = json.loads(fig.to_json())
        template = spec.get("layout", {}).pop("template", None)
        index = None
        if template is not None:
            _power_exponents(template)
            if template not in self.templates:
                self.templates.append(template)
            index = self.templates.index(template)
        height = spec.get("layout", {}).get("height") or 450
        self.count += 1
        ident = f"plot-{self.count}"
        payload = _script_json(json.dumps({"figure": spec, "template": index}, separators=(",", ":")))
        return (
            f"<div class='lazy-plot' data-spec='{ident}-spec' id='{ident}' style='height:{int(height)}px'></div>"
            f"<script type='application/json' id='{ident}-spec'>{payload}</script>"
        )


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _section_id(index: int, section: Section) -> str:
    return f"s{index}-{_anchor(section.key or section.title)[:40]}"


def _section_html(index: int, section: Section, figure_dir: Path | None, plots: _Plots) -> tuple[str, str]:
    m = section.manifest
    sid = _section_id(index, section)
    status = html.escape(str(m.get("status")))
    parts = [f"<section id='{sid}'><h2>{html.escape(section.title)}</h2>"]
    parts.append(_headline_html(headline(m)))
    wall = m.get("wall_seconds")
    wall_text = f"{wall:.3g} s" if isinstance(wall, (int, float)) else "not recorded"
    parts.append(
        f"<p>status: <b class='status-{status}'>{status}</b>"
        f" · wall time: {html.escape(wall_text)}"
        f" · device: {html.escape(str(m.get('device')))} · dtype: {html.escape(str(m.get('dtype')))}</p>"
    )
    if m.get("error"):
        parts.append(f"<p class='status-failed'>error: {html.escape(str(m['error']))}</p>")
    figures = section.figures or [(name, fig) for name, result in section.results.items() for fig in figures_of(result)]
    nav_items = []
    for number, (name, fig) in enumerate(figures, 1):
        fid = f"{sid}-f{number}"
        nav_items.append(f"<li><a href='#{fid}'>{html.escape(fig.title)}</a></li>")
        parts.append(f"<div class='fig' id='{fid}'><h3>{html.escape(fig.title)}</h3>")
        if fig.interactive is not None:
            parts.append(plots.placeholder(fig.interactive))
        if fig.static is not None:
            stem = figure_stem(section.key, name, fig.slug)
            path = figure_dir / f"{stem}.png" if figure_dir is not None else None
            _stamp(fig, section)
            png = _png(fig, path)
            alt = html.escape(fig.title, quote=True)
            img = f"<img alt='{alt}' src='data:image/png;base64,{png}'>"
            parts.append(
                img if fig.interactive is None else f"<details><summary>static figure</summary>{img}</details>"
            )
        if fig.caption:
            parts.append(f"<p class='caption'>{html.escape(fig.caption)}</p>")
        parts.append("</div>")
    if m.get("result"):
        parts.append(f"<h3 id='{sid}-numbers'>All numbers</h3>" + result_tables(m["result"]))
        nav_items.append(f"<li><a href='#{sid}-numbers'>All numbers</a></li>")
    meta_rows = [
        ("command", m.get("command")),
        ("argv", " ".join(map(str, m.get("argv") or []))),
        ("started", m.get("started")),
        ("ended", m.get("ended")),
        ("seeds", m.get("seeds")),
        *(("config." + k, v) for k, v in (m.get("config") or {}).items()),
        *(("versions." + k, v) for k, v in (m.get("versions") or {}).items()),
    ]
    parts.append("<details><summary>run metadata</summary>" + _key_value_table(meta_rows) + "</details></section>")
    nav = f"<li><a href='#{sid}'>{html.escape(section.title)}</a><ol>{''.join(nav_items)}</ol></li>"
    return "\n".join(parts), nav


def render_report(title: str, sections: Sequence[Section], figure_dir: Path | None = None) -> str:
    """The report as one HTML string (``figure_dir``: also save each static figure there)."""
    plots = _Plots()
    rendered = [_section_html(i, s, figure_dir, plots) for i, s in enumerate(sections, 1)]
    body = "\n".join(part for part, _ in rendered)
    if len(sections) > 1:  # a report of several runs opens with each run's headline, linked to its section
        rows = "".join(
            f"<tr><th><a href='#{sid}'>{html.escape(s.title)}</a></th><td>"
            + html.escape(" · ".join(f"{k}: {v}" for k, v in headline(s.manifest)) or "—")
            + "</td></tr>"
            for (s, sid) in zip(sections, (_section_id(i, s) for i, s in enumerate(sections, 1)), strict=True)
        )
        body = f"<section id='at-a-glance'><h2>At a glance</h2><table>{rows}</table></section>\n{body}"
        rendered.insert(0, ("", "<li><a href='#at-a-glance'>At a glance</a></li>"))
    nav = (
        "<nav aria-label='contents'><p class='nav-title'>Contents</p><ol>"
        + "".join(n for _, n in rendered)
        + "</ol></nav>"
    )
    scripts = ""
    if plots.count:
        from plotly.offline import get_plotlyjs

        templates = _script_json(json.dumps(plots.templates, separators=(",", ":")))
        scripts = (
            f"<script>{get_plotlyjs()}</script>"
            f"<script type='application/json' id='plot-templates'>{templates}</script><script>{_LOADER}</script>"
        )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{nav}<main><h1>{html.escape(title)}</h1>\n{body}\n</main>"
        f"{scripts}</body></html>\n"
    )


def write_report(path: Path, title: str, sections: Sequence[Section], figure_dir: Path | None = None) -> Path:
    """Write ``report.html`` atomically (and the static figures, when ``figure_dir`` is given)."""
    text = render_report(title, sections, figure_dir)
    return atomic_write(path, lambda f: f.write(text.encode()))
