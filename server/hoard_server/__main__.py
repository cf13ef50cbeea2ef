"""``python -m hoard_server [serve] [options]``: run the daemon."""

import sys

from hoard_server.daemon import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "serve":
        args = args[1:]
    sys.exit(main(args))
