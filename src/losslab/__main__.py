"""``python -m losslab`` (the same as the ``losslab`` command)."""

from losslab.cli import main

main()
