"""Train an agent: ``python train.py --help`` (the same as ``rlrnn train``)."""

import sys

from rlrnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
