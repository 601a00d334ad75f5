"""The help lists every command and command group with a whole first sentence (none stops inside a citation)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main
from typer.testing import CliRunner

import losslab
from losslab.cli import app


def _groups(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """The command groups (typer's own click: duck-typed) under ``group``, with their paths."""
    yield path, group
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _groups(command, (*path, name))


def test_no_command_summary_stops_mid_sentence() -> None:
    seen = 0
    for path, group in _groups(typer.main.get_command(app)):
        for name, command in group.commands.items():
            short = command.get_short_help_str()  # click's default limit, the one its listings truncate to
            where = " ".join((*path, name))
            assert short.count("(") == short.count(")"), f"{where}: {short!r}"
            assert not short.endswith(("et al.", "e.g.", "i.e.", "...")), f"{where}: {short!r}"
            assert short.endswith((".", ")", "?")) or len(short.split()) <= 6, f"{where}: {short!r}"
            seen += 1
    assert seen > 30  # every command of losslab, losslab study and losslab exact


def test_the_rendered_listings_are_whole_sentences() -> None:
    runner = CliRunner()
    for path, _ in _groups(typer.main.get_command(app)):
        text = runner.invoke(app, [*path, "--help"], terminal_width=80).stdout
        listing = text.split("Commands:", 1)[1]
        assert "..." not in listing, f"losslab {' '.join(path)} --help:\n{listing}"
        # each entry (name, then its wrapped summary) has balanced parentheses
        for entry in re.split(r"\n  (?=\S)", listing.strip()):
            assert entry.count("(") == entry.count(")"), entry


def test_first_sentence_skips_citations_and_parentheses() -> None:
    from losslab.cli.app import first_sentence

    doc = "Instability analysis (Frankle et al. 2020): barrier between copies. Then more.\n\nDetails."
    assert first_sentence(doc) == "Instability analysis (Frankle et al. 2020): barrier between copies."
    assert first_sentence("Train a model (e.g. an MLP). More") == "Train a model (e.g. an MLP)."
    assert first_sentence("No full stop") == "No full stop"


def test_python_dash_m_losslab_is_the_command() -> None:
    src = str(Path(losslab.__file__).parents[1])  # this checkout's package, not an installed one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "losslab", "--help"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "Commands:" in out.stdout and "instability" in out.stdout
