from __future__ import annotations

import sys
from pathlib import Path

# tests/ on the path: ``harness``, ``workers`` and the old ``daemon`` import by name
sys.path.insert(0, str(Path(__file__).parent))

from harness.fixtures import client, daemon_factory, hoard_daemon, repo

__all__ = ["client", "daemon_factory", "hoard_daemon", "repo"]
