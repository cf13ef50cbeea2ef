"""``hoard``: the command line. ``hoard serve`` runs the daemon; the rest talk to one.

One module per command group: :mod:`~hoard.cli.objects` (put, get, cat, has, stat, ls, rm),
:mod:`~hoard.cli.repo` (repo create/ls/rm), :mod:`~hoard.cli.maintenance` (info, maintain,
verify, backup, restore), :mod:`~hoard.cli.datasets` (ds ls/describe/cat/export/import/rm/
mv/du), :mod:`~hoard.cli.metadata` (meta sync/query/count/schema/rm) and
:mod:`~hoard.cli.serve` (the daemon, passed through) and :mod:`~hoard.cli.token` (token
add/ls/rm: the daemon's tokens file, offline). Errors are
reported as ``hoard: <message>`` on stderr with exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from hoard.cli import datasets, maintenance, metadata, objects, repo, serve, token
from hoard.client import connect
from hoard.errors import HoardError, TLSError, UnavailableError
from hoard.transport import DEFAULT_TARGET

__all__ = ["build_parser", "main"]

GROUPS = (objects, maintenance, repo, datasets, metadata, token)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    split = serve.find_serve(args_list)
    if split is not None:
        return serve.run(args_list[split + 1 :])
    args = build_parser().parse_args(args_list)
    try:
        if getattr(args, "offline", False):  # runs here, without a daemon
            return args.run(None, args)
        with connect(
            args.target,
            token=args.token,
            token_file=args.token_file,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_server_name=args.tls_server_name,
            insecure=args.insecure,
            timeout=args.timeout,
        ) as client:
            return args.run(client, args)
    except TLSError as exc:  # its message names the daemon and the likely cause
        print(f"hoard: {exc}", file=sys.stderr)
        return 1
    except UnavailableError as exc:
        print(f"hoard: cannot reach the daemon at {args.target}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`hoard cat KEY | head`): not worth a message. Point stdout
        # at /dev/null so that the interpreter's final flush does not complain either.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (HoardError, OSError) as exc:
        print(f"hoard: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand but ``serve``."""
    parser = argparse.ArgumentParser(
        prog="hoard", description="Talk to a hoard storage daemon (or run one: hoard serve)."
    )
    parser.add_argument(
        "--target",
        default=os.environ.get("HOARD_TARGET") or DEFAULT_TARGET,
        help="daemon address, host:port or unix:/path (env HOARD_TARGET; %(default)s)",
    )
    parser.add_argument(
        "-r",
        "--repository",
        default=os.environ.get("HOARD_REPOSITORY") or "default",
        help="repository to act on (env HOARD_REPOSITORY; %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="deadline of each call, seconds (%(default)s)"
    )
    _connection_flags(parser)
    parser.add_argument("--version", action="version", version=f"hoard {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(sub)
    for group in GROUPS:
        group.register(sub)
    return parser


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    """How to reach a daemon that wants a token or TLS; unset, each falls back to its
    variable (read by hoard.connect)."""
    security = parser.add_argument_group("token and TLS (each also from its HOARD_* variable)")
    for flag, metavar, env, text in (
        ("--token", "TOKEN", "HOARD_TOKEN", "bearer token (visible in ps: prefer --token-file)"),
        ("--token-file", "FILE", "HOARD_TOKEN_FILE", "file holding the bearer token"),
        ("--tls-ca", "FILE", "HOARD_TLS_CA", "use TLS; PEM CA the daemon's certificate is from"),
        ("--tls-cert", "FILE", "HOARD_TLS_CERT", "PEM client certificate (mutual TLS)"),
        ("--tls-key", "FILE", "HOARD_TLS_KEY", "PEM private key of --tls-cert"),
        (
            "--tls-server-name",
            "NAME",
            "HOARD_TLS_SERVER_NAME",
            "name the daemon's certificate has, if not the target's host",
        ),
    ):
        security.add_argument(flag, metavar=metavar, help=f"{text} (env {env})")
    security.add_argument(
        "--insecure",
        action="store_true",
        help="send the token over plain TCP to another host (a network you trust only)",
    )


def _version() -> str:
    from hoard import __version__

    return __version__
