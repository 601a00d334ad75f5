"""``losslab info`` and ``losslab show``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from losslab.cli.app import app
from losslab.cli.common import JsonOpt, command, emit, stdout
from losslab.store import environment, load

__all__ = ["info", "show"]


@app.command()
@command
def info(json_out: JsonOpt = False) -> None:
    """Versions, devices and threads of this installation."""
    facts = environment()
    if json_out:
        sys.stdout.write(json.dumps(facts) + "\n")
        return
    for key, value in facts.items():
        stdout.print(f"{key:>13}: {value}", markup=False)


@app.command()
@command
def show(
    run: Annotated[Path, typer.Argument(help="A run directory written by losslab.")],
    json_out: JsonOpt = False,
) -> None:
    """A summary table of any run: command, status, headline numbers, results."""
    loaded = load(run)
    manifest = {**loaded.manifest, "status": loaded.status}  # 'interrupted' where run.json still says running
    emit(run, manifest, json_out)
    if not json_out:
        wall = manifest.get("wall_seconds")
        stdout.print(
            f"status: {manifest['status']} · started {manifest.get('started')} · "
            f"wall {f'{wall:.4g} s' if isinstance(wall, (int, float)) else 'not recorded'} · "
            f"results: {', '.join(loaded.results) or 'none'}",
            markup=False,
        )
        if manifest["status"] == "interrupted":
            stdout.print(
                "its process was killed before it finished: rerun the same command to resume it.", markup=False
            )
        if manifest.get("error"):
            stdout.print(f"error: {manifest['error']}", markup=False)
