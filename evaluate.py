"""Evaluate a trained agent: ``python evaluate.py RUN --help`` (the same as ``rlrnn evaluate``).

The analysis commands run from here too: ``python evaluate.py compare|probe|gradflow ...`` is
``rlrnn compare|probe|gradflow ...``.
"""

import sys

from rlrnn.cli import main

ANALYSES = ("compare", "probe", "gradflow")

if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(args if args[:1] and args[0] in ANALYSES else ["evaluate", *args]))
