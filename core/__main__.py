"""``python -m core <command> [args]``: run one of Digit Lab's command lines (core.cli); alone, list them."""

import sys

from core.cli import run

if __name__ == "__main__":
    sys.exit(run())
