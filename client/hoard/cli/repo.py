"""``hoard repo create|ls|rm``: the repositories a daemon hosts."""

from __future__ import annotations

import argparse
from typing import Any

from hoard.client import Client


def register(sub: Any) -> None:
    p = sub.add_parser("repo", help="create, list or erase repositories")
    actions = p.add_subparsers(dest="repo_command", required=True, metavar="ACTION")
    q = actions.add_parser("create", help="create a repository (no-op if it exists)")
    q.add_argument("name")
    q.set_defaults(run=create)
    q = actions.add_parser("ls", help="list repositories")
    q.set_defaults(run=list_all)
    q = actions.add_parser("rm", help="erase a repository and everything in it")
    q.add_argument("name")
    q.set_defaults(run=erase)


def create(client: Client, args: argparse.Namespace) -> int:
    info = client.create_repository(args.name)
    print(f"{info.name} {info.uuid}")
    return 0


def list_all(client: Client, args: argparse.Namespace) -> int:
    for info in client.list_repositories():
        print(f"{info.name} {info.uuid}")
    return 0


def erase(client: Client, args: argparse.Namespace) -> int:
    client.erase_repository(args.name)
    return 0
