"""``hoard token add|ls|rm``: the daemon's tokens file, edited offline on the daemon's host.

``add`` prints the new token once, alone on stdout (``TOKEN=$(hoard token add ...)``); the
file keeps only its SHA-256. The daemon reads the file again on SIGHUP (``systemctl reload
hoard``). Needs the server extra, whose ``hoard_server.auth.tokens`` owns the format.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from hoard.cli.serve import SERVER_MISSING

RELOAD = (
    "daemon sees the change once it re-reads the file: systemctl reload hoard (or kill -HUP <pid>)"
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "token",
        help="add, list or remove the daemon's access tokens (offline, on the daemon's host)",
        description="Edit the daemon's tokens file. It holds only each token's SHA-256; a new "
        "token is printed once. The " + RELOAD + ".",
    )
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--tokens-file",
        default=os.environ.get("HOARD_TOKENS_FILE") or None,
        metavar="FILE",
        help="the tokens file (env HOARD_TOKENS_FILE; default: [security] tokens_file of --config)",
    )
    where.add_argument(
        "--config",
        metavar="FILE",
        help="the daemon's TOML config file, to find its tokens file (also HOARD_CONFIG)",
    )
    actions = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    q = actions.add_parser(
        "add",
        parents=[where],
        help="make a token and print it (only this once)",
        description="Make a token with the given roles and print it on stdout, once.",
    )
    q.add_argument("name", help="who or what uses it (shown in the audit log), e.g. ci or alice")
    q.add_argument(
        "--role",
        action="append",
        required=True,
        metavar="REPO=ROLE",
        help="a role on a repository: read, write or admin (each includes the ones before); "
        "'*' is every repository. Repeat for more, e.g. --role lab=write --role '*=read'",
    )
    q.add_argument(
        "--replace", action="store_true", help="give an existing name a new token and these roles"
    )
    q.set_defaults(run=add, offline=True)
    q = actions.add_parser(
        "ls", parents=[where], help="list tokens: names, creation times, roles (never hashes)"
    )
    q.set_defaults(run=list_all, offline=True)
    q = actions.add_parser(
        "rm", parents=[where], help="remove a token: calls made with it are refused"
    )
    q.add_argument("name")
    q.set_defaults(run=remove, offline=True)


def _tokens_module() -> Any:
    try:
        from hoard_server.auth import tokens
    except ImportError:
        raise SystemExit(f"hoard: {SERVER_MISSING}") from None
    return tokens


def _tokens_file(args: argparse.Namespace) -> str:
    if args.tokens_file:
        return str(args.tokens_file)
    if args.config or os.environ.get("HOARD_CONFIG"):
        from hoard_server.daemon.config import ConfigError, load_config

        try:
            path = load_config(args.config).security.tokens_file
        except ConfigError as exc:
            raise SystemExit(f"hoard: {exc}") from None
        if path:
            return path
        where = args.config or os.environ.get("HOARD_CONFIG")
        raise SystemExit(f"hoard: {where} sets no [security] tokens_file; pass --tokens-file")
    raise SystemExit(
        "hoard: which tokens file? Pass --tokens-file FILE, set HOARD_TOKENS_FILE, or pass "
        "--config with the daemon's config file"
    )


def _roles(tokens: Any, specs: list[str]) -> dict[str, Any]:
    roles: dict[str, Any] = {}
    for spec in specs:
        repository, sep, role = spec.partition("=")
        if not sep or not repository or not role:
            raise tokens.TokensFileError(f"--role {spec!r}: write REPOSITORY=ROLE, e.g. lab=write")
        if repository in roles:
            raise tokens.TokensFileError(f"--role names {repository!r} twice")
        roles[repository] = tokens.Role.parse(role)
    return roles


def add(_client: None, args: argparse.Namespace) -> int:
    tokens = _tokens_module()
    path = _tokens_file(args)
    try:
        token = tokens.add_token(path, args.name, _roles(tokens, args.role), replace=args.replace)
    except tokens.TokensFileError as exc:
        print(f"hoard: {exc}", file=sys.stderr)
        return 1
    print(token)
    print(
        f"hoard: token {args.name!r} added to {path}; it is shown only this once. The {RELOAD}.",
        file=sys.stderr,
    )
    return 0


def list_all(_client: None, args: argparse.Namespace) -> int:
    tokens = _tokens_module()
    path = _tokens_file(args)
    if not os.path.exists(path):
        print(f"hoard: no tokens file at {path} yet: hoard token add makes it", file=sys.stderr)
        return 1
    try:
        entries = tokens.read_tokens_file(path)
    except tokens.TokensFileError as exc:
        print(f"hoard: {exc}", file=sys.stderr)
        return 1
    for entry in sorted(entries.values(), key=lambda e: e.name):
        roles = " ".join(f"{repo}={role.label}" for repo, role in sorted(entry.roles.items()))
        print(f"{entry.name}\t{entry.created or '-'}\t{roles}")
    return 0


def remove(_client: None, args: argparse.Namespace) -> int:
    tokens = _tokens_module()
    path = _tokens_file(args)
    try:
        tokens.remove_token(path, args.name)
    except tokens.TokensFileError as exc:
        print(f"hoard: {exc}", file=sys.stderr)
        return 1
    print(f"hoard: token {args.name!r} removed from {path}. The {RELOAD}.", file=sys.stderr)
    return 0
