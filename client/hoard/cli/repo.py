"""``hoard repo create|ls|rm|quota``: the repositories a daemon hosts."""

from __future__ import annotations

import argparse
import re
from typing import Any

from hoard.cli.output import human
from hoard.client import Client

_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgtp]?)(i?)b?)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from "10GiB", "500MB", "1.5T", "4096" or "0" (decimal units are powers of
    1000, binary ones, with an i, of 1024); ValueError naming the accepted forms."""
    m = _SIZE.fullmatch(text)
    if m is None or (m.group(3) and not m.group(2)):
        raise ValueError(
            f"{text!r} is not a size: write a number of bytes, optionally with a unit "
            "(500MB, 10GiB, 2T; 0 for none)"
        )
    number, prefix, binary = m.group(1), (m.group(2) or "").lower(), m.group(3)
    scale = 1024 ** "kmgtp".index(prefix) * 1024 if binary else _UNITS[prefix]
    return round(float(number) * scale)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: Any) -> None:
    p = sub.add_parser("repo", help="create, list or erase repositories, or set their quota")
    actions = p.add_subparsers(dest="repo_command", required=True, metavar="ACTION")
    q = actions.add_parser("create", help="create a repository (no-op if it exists)")
    q.add_argument("name")
    q.set_defaults(run=create)
    q = actions.add_parser("ls", help="list repositories, with their quota and bytes used")
    q.set_defaults(run=list_all)
    q = actions.add_parser("rm", help="erase a repository and everything in it")
    q.add_argument("name")
    q.set_defaults(run=erase)
    q = actions.add_parser(
        "quota", help="limit the bytes a repository may hold on disk (0: no limit)"
    )
    q.add_argument("name")
    q.add_argument("size", type=_size, help="bytes, or with a unit: 500MB, 10GiB; 0: none")
    q.set_defaults(run=quota)


def create(client: Client, args: argparse.Namespace) -> int:
    info = client.create_repository(args.name)
    print(f"{info.name} {info.uuid}")
    return 0


def list_all(client: Client, args: argparse.Namespace) -> int:
    for info in client.list_repositories():
        quota = human(info.quota_bytes) if info.quota_bytes else "none"
        print(f"{info.name} {info.uuid} used {human(info.used_bytes)} quota {quota}")
    return 0


def erase(client: Client, args: argparse.Namespace) -> int:
    client.erase_repository(args.name)
    return 0


def quota(client: Client, args: argparse.Namespace) -> int:
    info = client.repositories.set_quota(args.name, args.size)
    limit = f"{human(info.quota_bytes)} ({info.quota_bytes} bytes)" if info.quota_bytes else "none"
    print(f"{info.name}: quota {limit}, {human(info.used_bytes)} used")
    return 0
