"""The report in a real headless browser: navigation, headline numbers, lazy figures, no errors, no network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _browser import chromium_or_skip, opened
from plotly.offline import get_plotlyjs

from losslab.objective import Objective
from losslab.report import Section, figures_of, write_report
from losslab.surface import axis, plane, random_directions

_CONNECT = {  # the shape of ConnectResult.summary (the demo's connect step)
    "barrier": {
        "naive": {"train_loss": {"linear": 0.7297, "max_endpoint": 0.7289}, "test_error": {"linear": 0.0628}},
        "aligned": {"train_loss": {"linear": 0.04382, "max_endpoint": 0.0430}, "test_error": {"linear": 0.0033}},
    },
    "endpoints": {"a": {"train_loss": 0.0336, "test_error": 0.0223}, "b": {"train_loss": 0.0353, "test_error": 0.0251}},
}
_HESSIAN = {
    "top": {"eigenvalues": [1.4151903933739325, 1.169], "converged": 2, "certified": True},
    "bottom": {"eigenvalues": [-0.014726625843325986], "converged": 1},
    "trace": {"estimate": 15.55797, "stderr": 0.154},
    "saddle": {"verdict": "saddle", "fraction": 0.11342923463755414, "count": None},
}


def _manifest(command: str, result: dict) -> dict:
    return {"command": command, "status": "complete", "result": result, "wall_seconds": 1.0, "device": "cpu"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo-like report (a few sections, eight interactive figures) built in a second, not the 2-minute demo."""
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(20, 3, generator=g), torch.randint(3, (20,), generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    obj = Objective(model, "cross_entropy", (X, y), dtype="float64")
    dirs = random_directions(obj.layout, obj.theta0, "filter", seed=0)
    surface = plane(obj, obj.theta0, dirs, axis(-1.0, 1.0, 7), axis(-1.0, 1.0, 7))
    figs = [("surface", f) for f in figures_of(surface)]
    sections = [
        Section("Loss surface", _manifest("surface", {"min_loss": float(np.min(surface.loss))}), {}, figs, "surface"),
        Section("Connect two seeds", _manifest("connect", _CONNECT), {}, figs * 3, "connect"),
        Section("Hessian", _manifest("hessian", _HESSIAN), {}, figs * 4, "hessian"),
    ]
    out = tmp_path_factory.mktemp("browser") / "report.html"
    write_report(out, "demo-like report", sections, out.parent / "figures")
    return out


def test_the_report_opens_fast_with_navigation_headlines_and_lazy_figures(
    report: Path, record_property: pytest.RecordProperty
) -> None:
    chromium_or_skip()
    text = report.read_text()
    assert text.count("<script>") == 2  # plotly.js once, then the loader; figures are JSON, not scripts
    assert text.count(get_plotlyjs()[:2000]) == 1 and text.count("'lazy-plot'") == 8
    with opened(report) as seen:
        page, errors, requests = seen["page"], seen["errors"], seen["requests"]
        record_property("open_seconds", round(seen["open_seconds"], 3))  # recorded, never asserted: wall time flakes
        record_property("report_bytes", report.stat().st_size)
        state = page.evaluate("window.losslabReport")
        assert state["total"] == 8
        assert state["rendered"] < state["total"], "figures below the fold wait until they scroll into view"
        # every navigation link leads to an element of the page
        hrefs = page.eval_on_selector_all("nav a", "as => as.map(a => a.getAttribute('href'))")
        assert len(hrefs) >= 3 + 8
        missing = page.evaluate("hs => hs.filter(h => !document.querySelector(h))", hrefs)
        assert missing == []
        # the headline numbers sit at the top of their sections, in words
        connect = page.locator("section[id$='connect'] .headline").inner_text()
        assert "barrier (train loss) naive → aligned" in connect and "0.73 → 0.0438" in connect
        hessian = page.locator("section[id$='hessian'] .headline").inner_text()
        assert "λmax" in hessian and "1.415" in hessian and "0.113 (saddle)" in hessian
        # following the last link scrolls the last figure into view, and it is drawn
        page.locator("nav a").last.click()
        page.locator(".lazy-plot").last.scroll_into_view_if_needed()
        page.wait_for_function("document.querySelectorAll('.lazy-plot')[7].dataset.rendered === '1'", timeout=20_000)
        page.wait_for_selector(".lazy-plot >> nth=7 >> .main-svg", timeout=20_000)
        assert page.evaluate("window.losslabReport.errors") == []
    assert errors == []
    assert all(url.startswith(("file:", "data:", "blob:", "about:")) for url in requests), requests
