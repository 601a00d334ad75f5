"""The ``losslab`` Typer application; commands register themselves from their modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from losslab._version import __version__

__all__ = ["App", "app", "first_sentence"]

_ABBREVIATIONS = ("et al.", "e.g.", "i.e.", "cf.", "vs.", "Fig.", "Eq.")


def first_sentence(doc: str | None) -> str:
    """The first sentence of a docstring, for the command list: click's own rule stops at the first word ending
    in '.', which cuts "Instability analysis (Frankle et al. 2020): …" after "al.". A sentence here ends at '.'
    outside parentheses and not after a known abbreviation."""
    text = " ".join((doc or "").split("\n\n")[0].split())
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == "." and depth <= 0 and (i + 1 == len(text) or text[i + 1] == " "):
            if not text[: i + 1].endswith(_ABBREVIATIONS):
                return text[: i + 1]
    return text


class App(typer.Typer):
    """A Typer app whose commands and command groups are listed with their whole first sentence (see
    `first_sentence`); ``losslab`` and its groups (``study``, ``exact``) are all built from it."""

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        decorator = super().command(name, **kwargs)
        if kwargs.get("short_help") is not None:
            return decorator

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            result = decorator(fn)
            self.registered_commands[-1].short_help = first_sentence(fn.__doc__)
            return result

        return register

    def add_typer(self, typer_instance: typer.Typer, **kwargs: Any) -> None:
        if kwargs.get("short_help") is None:
            kwargs["short_help"] = first_sentence(kwargs.get("help") or typer_instance.info.help)
        super().add_typer(typer_instance, **kwargs)


app = App(
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
