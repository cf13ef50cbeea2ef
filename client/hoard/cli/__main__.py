"""``python -m hoard.cli``."""

import sys

from hoard.cli import main

sys.exit(main())
