"""``hoard serve``: the daemon's own command line, passed through untouched."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["SERVER_MISSING", "find_serve", "register", "run"]

SERVER_MISSING = "the daemon needs the server extra: pip install 'hoard[server]'"

# Global options taking a value, so that `hoard --target X serve ...` is recognised.
_GLOBAL_WITH_VALUE = ("--target", "--repository", "-r", "--timeout")


def register(sub: Any) -> None:
    sub.add_parser("serve", help="run the daemon (hoard serve --help for its options)")


def find_serve(argv: list[str]) -> int | None:
    """Index of a ``serve`` subcommand in ``argv`` (after global options), else None."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_WITH_VALUE:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return i if arg == "serve" else None
    return None


def run(argv: list[str]) -> int:
    """Run the daemon with its own arguments; 2 when the server package is missing."""
    try:
        from hoard_server import commands
    except ImportError:
        print(SERVER_MISSING, file=sys.stderr)
        return 2
    return commands.serve(argv)
