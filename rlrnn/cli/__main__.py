"""``python -m rlrnn.cli ...``: the ``rlrnn`` command."""

import sys

from rlrnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
