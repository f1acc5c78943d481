"""Evaluate a trained agent: ``python evaluate.py RUN --help`` (the same as ``rlrnn evaluate``)."""

import sys

from rlrnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
