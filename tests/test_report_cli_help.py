"""The top-level help lists every command with a whole first sentence (none stops inside a citation)."""

from __future__ import annotations

import typer.main

from losslab.cli import app


def test_no_command_summary_stops_mid_sentence() -> None:
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        short = command.get_short_help_str(limit=200)
        assert short.count("(") == short.count(")"), f"{name}: {short!r}"
        assert not short.endswith(("et al.", "e.g.", "i.e.")), f"{name}: {short!r}"


def test_first_sentence_skips_citations_and_parentheses() -> None:
    from losslab.cli.app import first_sentence

    doc = "Instability analysis (Frankle et al. 2020): barrier between copies. Then more.\n\nDetails."
    assert first_sentence(doc) == "Instability analysis (Frankle et al. 2020): barrier between copies."
    assert first_sentence("Train a model (e.g. an MLP). More") == "Train a model (e.g. an MLP)."
    assert first_sentence("No full stop") == "No full stop"
