"""The ``losslab`` command: thin typed functions over the library."""

from __future__ import annotations

import sys

# Import order is the demo's order: training (in demo), each analysis, the studies last.
from losslab.cli import (  # noqa: F401
    basic,
    connect,  # noqa: F401, I001
    demo,
    exact,  # noqa: F401, I001
    hessian,  # noqa: F401, I001
    ntk,  # noqa: F401, I001
    study,  # noqa: F401, I001
    surface,  # noqa: F401, I001
    train,
)
from losslab.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``losslab`` console script."""
    sys.exit(app(prog_name="losslab"))
