"""The daemon: config sections, the server builder, the service table, start and stop.

``hoard serve`` (the SDK's CLI) and ``python -m hoard_server serve`` call :func:`main`.
"""

from hoard_server.daemon.main import Daemon, main

__all__ = ["Daemon", "main"]
