"""Every example in the README runs, and CI runs the README's two commands verbatim."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from losslab.cli import app
from losslab.data.fashion_mnist import DEFAULT_ROOT as FASHION_ROOT
from losslab.data.fashion_mnist import FILES as FASHION_FILES

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)


def blocks(kind: str) -> list[str]:
    return [body for lang, body in BLOCKS if lang == kind]


def test_readme_opens_with_install_and_test_commands_that_ci_runs() -> None:
    install, tests = (body.strip() for body in blocks("console")[:2])
    assert "pip install torch==2.13.0" in install and install.endswith("losslab demo --out demo-run")
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install in ci and tests in ci
    first_block = README.index("```")
    assert README.index(install) < README.index(tests) and README.index(install) == README.index("```console") + 11
    assert first_block == README.index("```console")


def test_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}  # blocks continue one another, as the README reads
    for body in blocks("python"):
        exec(compile(body, "README.md", "exec"), namespace)


def _cli_examples(fashion: bool) -> list[str]:
    """The README's ``losslab`` command lines: those on Fashion-MNIST, or all the others."""
    lines = [line for body in blocks("bash") for line in body.splitlines() if line.startswith("losslab ")]
    return [line for line in lines if ("fashion-mnist" in line or "runs/fmnist" in line) == fashion]


def _run_in(tmp_path: Path, commands: list[str]) -> None:
    runner = CliRunner()
    for line in commands:
        args = shlex.split(line)[1:]
        result = runner.invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 0, (line, result.stderr)
        if "--json" in args:
            json.loads(result.stdout)


def test_cli_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    commands = _cli_examples(fashion=False)
    assert len(commands) > 10
    _run_in(tmp_path, commands)


def test_cli_examples_on_fashion_mnist_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path(FASHION_ROOT, FASHION_FILES["train_labels"]).is_file():  # .ci/run installs it
        pytest.skip("dataset-fashion-mnist is not installed: apt-get install -y dataset-fashion-mnist (CI does)")
    monkeypatch.chdir(tmp_path)
    commands = _cli_examples(fashion=True)
    assert len(commands) >= 3  # train, hessian, surface
    _run_in(tmp_path, commands)


def test_the_demo_of_the_first_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property: pytest.RecordProperty
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--out", "demo-run", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["status"] == "complete"
    from losslab.cli.demo import DEMO_STEPS

    assert set(payload["result"]) == {name for name, _, _ in DEMO_STEPS}
    report = (tmp_path / "demo-run" / "report.html").read_text()
    for _, title, _ in DEMO_STEPS:
        assert title.split(" (")[0] in report
    rerun = CliRunner().invoke(app, ["demo", "--out", "demo-run"], catch_exceptions=False)
    assert rerun.exit_code == 2 and "--force" in rerun.stderr
    _the_demo_report_reads_well_in_a_browser(tmp_path / "demo-run" / "report.html", record_property)


def _the_demo_report_reads_well_in_a_browser(report: Path, record_property: pytest.RecordProperty) -> None:
    """The demo's own report in headless Chromium: navigation, headlines, no errors, no network."""
    from _browser import chromium_or_skip, open_report

    chromium_or_skip()
    seen = open_report(report)
    record_property("demo_report_open_seconds", round(seen["open_seconds"], 3))  # recorded, never asserted
    record_property("demo_report_bytes", report.stat().st_size)
    assert seen["errors"] == []
    assert all(url.startswith(("file:", "data:", "blob:", "about:")) for url in seen["requests"]), seen["requests"]
    assert len(seen["links"]) >= 10 and seen["missing"] == []
    assert seen["state"]["total"] > seen["state"]["rendered"]  # figures below the fold wait to be scrolled to
    headlines = seen["headlines"]
    connect = next(text for sid, text in headlines.items() if sid.endswith("connect"))
    assert "barrier (train loss) naive → aligned" in connect
    hessian = next(text for sid, text in headlines.items() if sid.endswith("hessian"))
    assert "λmax" in hessian
