"""The ``losslab`` command: thin typed functions over the library."""

from __future__ import annotations

import sys

from losslab.cli import basic, demo, surface, train  # noqa: F401  (register the commands)
from losslab.cli import study  # noqa: F401, I001  (keep last: the demo runs the studies after the analyses)
from losslab.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``losslab`` console script."""
    sys.exit(app(prog_name="losslab"))
