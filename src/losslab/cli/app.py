"""The ``losslab`` Typer application; commands register themselves from their modules."""

from __future__ import annotations

from typing import Annotated

import typer

from losslab._version import __version__

__all__ = ["app"]

app = typer.Typer(
    name="losslab",
    help="Measure why a neural network is hard or easy to train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"losslab {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Measure why a neural network is hard or easy to train."""
