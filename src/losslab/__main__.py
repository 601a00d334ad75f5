"""``python -m losslab``: the same command line as ``losslab``."""

from losslab.cli import main

if __name__ == "__main__":
    main()
