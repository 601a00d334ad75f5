"""``losslab info`` and ``losslab show``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer

from losslab.cli.app import app
from losslab.cli.common import JsonOpt, command, emit, stdout
from losslab.errors import UserError
from losslab.store import load, versions

__all__ = ["info", "show"]


@app.command()
@command
def info(json_out: JsonOpt = False) -> None:
    """Versions, devices and threads of this installation."""
    facts = {
        **versions(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
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
    manifest = loaded.manifest
    if not isinstance(manifest.get("result", {}), (dict, type(None))):
        raise UserError(f"The run.json of {str(run)!r} is damaged (result is not an object): rerun the command.")
    emit(run, manifest, json_out)
    if not json_out:
        stdout.print(
            f"status: {manifest.get('status')} · started {manifest.get('started')} · "
            f"wall {manifest.get('wall_seconds')} s · results: {', '.join(loaded.results) or 'none'}",
            markup=False,
        )
        if manifest.get("error"):
            stdout.print(f"error: {manifest['error']}", markup=False)
