"""``python -m hoard``: the command line, as ``hoard``."""

import sys

from hoard.cli import main

sys.exit(main())
