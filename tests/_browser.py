"""Open a report in headless Chromium (Debian's; never `playwright install`) and say what a reader meets."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest


def chromium_or_skip() -> str:
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium: apt-get install -y chromium (CI installs it)")
    return chromium


def open_report(report: Path) -> dict[str, Any]:
    """Errors, requests, open time, navigation targets that are missing, and each section's headline."""
    from playwright import sync_api

    chromium = chromium_or_skip()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--enable-unsafe-swiftshader", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        requests: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: requests.append(r.url))
        start = time.perf_counter()
        page.goto(report.as_uri(), wait_until="load")
        opened = time.perf_counter() - start
        hrefs = page.eval_on_selector_all("nav a", "as => as.map(a => a.getAttribute('href'))")
        missing = page.evaluate("hs => hs.filter(h => !document.querySelector(h))", hrefs)
        headlines = page.evaluate(
            "() => Object.fromEntries([...document.querySelectorAll('section')].map("
            "s => [s.id, (s.querySelector('.headline') || {}).innerText || '']))"
        )
        state = page.evaluate("window.losslabReport")
        browser.close()
    return {
        "errors": errors,
        "requests": requests,
        "open_seconds": opened,
        "links": hrefs,
        "missing": missing,
        "headlines": headlines,
        "state": state,
    }
