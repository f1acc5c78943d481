import sys

from rlrnn.cli import main

sys.exit(main())
