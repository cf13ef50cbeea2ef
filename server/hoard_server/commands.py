"""The daemon's commands as the ``hoard`` CLI reaches them: the one part of the server
package the SDK may import (it does so only when the server extra is installed).

Everything else in ``hoard_server`` is internal to the daemon; the SDK and the daemon share
only the generated ``hoard.v1`` API.
"""

from __future__ import annotations

import sys

from hoard_server import __version__

__all__ = ["__version__", "restore", "serve"]


def serve(argv: list[str]) -> int:
    """``hoard serve [options]``: run the daemon until SIGTERM/SIGINT; its exit status."""
    from hoard_server.daemon import main

    return main(argv) or 0


def restore(backup_dir: str, data_dir: str, repository: str | None = None) -> int:
    """``hoard restore``: bring a backup into a data directory, offline; prints what was
    restored (or why not) and returns the exit status."""
    from hoard_server.errors import HoardError
    from hoard_server.maintenance.backup import restore as restore_backup

    try:
        result = restore_backup(backup_dir, data_dir, repository)
    except HoardError as exc:
        print(f"hoard: {exc}", file=sys.stderr)
        return 1
    print(
        f"restored repository {result['repository']!r} into {data_dir}: "
        f"{result['objects']} objects, {result['packs']} packs, {result['files']} dataset "
        f"files ({result['bytes']} bytes)"
    )
    return 0
