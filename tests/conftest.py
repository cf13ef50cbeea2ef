from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import settings

# tests/ on the path: ``harness``, ``workers`` and the old ``daemon`` import by name
sys.path.insert(0, str(Path(__file__).parent))

from harness.fixtures import client, daemon_factory, hoard_daemon, repo

__all__ = ["client", "daemon_factory", "hoard_daemon", "repo"]

# Property tests draw new examples at every run (the default profile), which is how the
# fuzzing keeps finding things. CI loads "ci" (HOARD_HYPOTHESIS_PROFILE=ci, set by .ci/run):
# the same examples at every run, so a red CI is a change's doing, reproducible by anyone.
# Exploring stays with local runs and the `slow` variants.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HOARD_HYPOTHESIS_PROFILE", "default"))
