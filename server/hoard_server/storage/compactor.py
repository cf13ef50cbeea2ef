"""Compaction moved to ``hoard_server.maintenance.compactor``.

This name stays an alias of that very module (not a copy of its names), so that code
setting its module-level tunables through the old path still reaches the real ones.
"""

import sys

from hoard_server.maintenance import compactor as _compactor

sys.modules[__name__] = _compactor
