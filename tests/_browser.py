"""Open a report in headless Chromium (Debian's; never `playwright install`) and say what a reader meets."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def chromium_or_skip() -> str:
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium: apt-get install -y chromium (CI installs it)")
    return chromium


@contextmanager
def opened(report: Path) -> Iterator[dict[str, Any]]:
    """The report loaded in a page: ``page``, and the ``errors``, ``requests`` and ``open_seconds`` seen."""
    from playwright import sync_api

    chromium = chromium_or_skip()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--enable-unsafe-swiftshader", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        seen: dict[str, Any] = {"page": page, "errors": [], "requests": []}
        page.on("pageerror", lambda e: seen["errors"].append(str(e)))
        page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: seen["requests"].append(r.url))
        start = time.perf_counter()
        page.goto(report.as_uri(), wait_until="load")
        seen["open_seconds"] = time.perf_counter() - start
        try:
            yield seen
        finally:
            browser.close()


def open_report(report: Path) -> dict[str, Any]:
    """Errors, requests, open time, navigation targets that are missing, and each section's headline."""
    with opened(report) as seen:
        page = seen.pop("page")
        seen["links"] = page.eval_on_selector_all("nav a", "as => as.map(a => a.getAttribute('href'))")
        seen["missing"] = page.evaluate("hs => hs.filter(h => !document.querySelector(h))", seen["links"])
        seen["headlines"] = page.evaluate(
            "() => Object.fromEntries([...document.querySelectorAll('section')].map("
            "s => [s.id, (s.querySelector('.headline') || {}).innerText || '']))"
        )
        seen["state"] = page.evaluate("window.losslabReport")
    return seen
