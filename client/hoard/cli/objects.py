"""``hoard put|get|cat|has|stat|ls|rm``: objects. ``has`` and ``rm`` exit 1 when a key is
missing."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from hoard.cli.output import human, non_negative, stream_size, transfer_bar
from hoard.client import Client


def register(sub: Any) -> None:
    p = sub.add_parser("put", help="store files (or stdin) and print their keys")
    p.add_argument("files", nargs="*", metavar="FILE", help='files to store; "-" or none: stdin')
    p.set_defaults(run=put)

    for name in ("get", "cat"):
        p = sub.add_parser(name, help="write an object (or a range of it) to stdout or a file")
        p.add_argument("key")
        p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
        p.add_argument("--offset", type=non_negative, default=0)
        p.add_argument("--length", type=non_negative, default=None)
        p.set_defaults(run=get)

    p = sub.add_parser("has", help='print "KEY yes|no" per key; exit 1 if any is missing')
    p.add_argument("keys", nargs="+", metavar="KEY")
    p.set_defaults(run=has)

    p = sub.add_parser("stat", help="how an object is stored")
    p.add_argument("key")
    p.set_defaults(run=stat)

    p = sub.add_parser("ls", help="list keys, in key order")
    p.add_argument("--limit", type=non_negative, default=None, metavar="N")
    p.set_defaults(run=ls)

    p = sub.add_parser("rm", help="delete objects; missing keys are reported (exit 1)")
    p.add_argument("keys", nargs="+", metavar="KEY")
    p.set_defaults(run=rm)


def put(client: Client, args: argparse.Namespace) -> int:
    repo = client.repository(args.repository)
    for path in args.files or ["-"]:
        if path == "-":
            stdin = sys.stdin.buffer
            with transfer_bar(stream_size(stdin), "put -") as progress:
                key = repo.put_object_from_filelike(stdin, progress=progress)
            print(key)
        else:
            with (
                open(path, "rb") as handle,
                transfer_bar(stream_size(handle), f"put {path}") as progress,
            ):
                key = repo.put_object_from_filelike(handle, progress=progress)
            print(f"{key}  {path}")
    return 0


def get(client: Client, args: argparse.Namespace) -> int:
    repo = client.repository(args.repository)
    with transfer_bar(None, args.key[:12]) as progress:
        chunks = repo.iter_chunks(args.key, args.offset, args.length, progress=progress)
        first = next(chunks, b"")  # a missing key fails here, before -o FILE is created
        with open(args.output, "wb") if args.output else contextlib.nullcontext() as out:
            sink = out if out is not None else sys.stdout.buffer
            sink.write(first)
            for chunk in chunks:
                sink.write(chunk)
            sink.flush()
    return 0


def has(client: Client, args: argparse.Namespace) -> int:
    found = client.repository(args.repository).has_objects(args.keys)
    for key, exists in zip(args.keys, found, strict=True):
        print(f"{key} {'yes' if exists else 'no'}")
    return 0 if all(found) else 1


def stat(client: Client, args: argparse.Namespace) -> int:
    st = client.repository(args.repository).stat(args.key)
    print(f"key:          {st.key}")
    print(f"size:         {st.raw_size} ({human(st.raw_size)})")
    print(f"stored size:  {st.stored_size} ({human(st.stored_size)})")
    print(f"encoding:     {st.encoding}")
    print(f"pack:         {st.pack_id}")
    return 0


def ls(client: Client, args: argparse.Namespace) -> int:
    repo = client.repository(args.repository)
    keys: Iterator[str] | list[str] = repo.list_objects()
    if args.limit is not None:
        keys = repo.list_objects_page(args.limit)[0] if args.limit else []
    out = sys.stdout
    for key in keys:
        out.write(key + "\n")
    return 0


def rm(client: Client, args: argparse.Namespace) -> int:
    deleted = set(client.repository(args.repository).delete_objects(args.keys, require_all=False))
    missing = [key for key in dict.fromkeys(args.keys) if key not in deleted]
    for key in missing:
        print(f"hoard: no object {key}", file=sys.stderr)
    return 1 if missing else 0
