"""Verification moved to ``hoard_server.maintenance.verifier``.

This name stays an alias of that very module, so that code patching it through the old
path patches the real one.
"""

import sys

from hoard_server.maintenance import verifier as _verifier

sys.modules[__name__] = _verifier
