"""The HTML report: self-contained, escaped, and really rendered by a browser."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from losslab.cli import app


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    result = CliRunner().invoke(
        app,
        ["train", "--data", "xor", "--epochs", "30", "--batch-size", "0", "--lr", "0.5", "--out", str(out), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    return out


def test_report_is_self_contained(run_dir: Path) -> None:
    text = (run_dir / "report.html").read_text()
    assert text.count("<script") >= 2  # plotly.js inlined once, then the figure
    assert not re.search(r"<script[^>]+src=", text), "no external scripts"
    assert not re.search(r"<link[^>]+href=\"?https?:", text), "no external stylesheets"
    assert "data:image/png;base64," in text
    assert "Headline numbers" in text and "train_accuracy" in text


def test_user_strings_are_escaped() -> None:
    from losslab.report import Section, render_report

    manifest = {
        "command": "<script>alert(1)</script>",
        "argv": ["--data", "<img src=x onerror=alert(1)>"],
        "config": {"data": "a&b"},
        "status": "complete",
        "result": {"<b>": "<i>"},
    }
    text = render_report("<title>", [Section("<h1>x</h1>", manifest, {})])
    assert "<script>alert" not in text and "<img src=x" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "a&amp;b" in text


def test_report_renders_in_a_real_browser(run_dir: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium: apt-get install -y chromium (CI installs it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--enable-unsafe-swiftshader",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        errors: list[str] = []
        requests: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto((run_dir / "report.html").as_uri())
        page.wait_for_selector(".plotly .main-svg", timeout=20_000)
        assert page.locator(".js-plotly-plot").count() >= 1
        assert page.locator("img").first.evaluate("img => img.naturalWidth") > 100
        browser.close()
    assert errors == []
    assert all(url.startswith(("file:", "data:", "blob:", "about:")) for url in requests), requests
