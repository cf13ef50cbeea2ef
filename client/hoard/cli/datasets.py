"""``hoard ds ls|describe|cat|export|import|rm|mv|du``: the HDF5 files of a repository.

hoard -r myrepo ds ls PROJECTS/p -R
hoard ds describe run/x.h5
hoard ds cat run/x.h5 data '[0:10, ::2]'        # CSV on stdout
hoard ds export run/x.h5 x.h5 && hoard ds import x.h5 run/copy.h5
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from typing import Any

import numpy as np

from hoard.arrays import Key, normalise_key
from hoard.cli.output import human, when
from hoard.client import Client
from hoard.datasets import DatasetShape

__all__ = ["parse_selection", "register"]


def register(sub: Any) -> None:
    ds = sub.add_parser("ds", help="HDF5 files (datasets) of a repository")
    cmd = ds.add_subparsers(dest="ds_command", required=True, metavar="COMMAND")

    p = cmd.add_parser("ls", help="files and folders under a folder")
    p.add_argument("folder", nargs="?", default="", help='folder ("" or none: the top)')
    p.add_argument("-R", "--recursive", action="store_true")
    p.add_argument("--h5", action="store_true", help="only .h5 files")
    p.add_argument("-l", "--long", action="store_true", help="sizes and dates")
    p.set_defaults(run=ls)

    p = cmd.add_parser("describe", help="a file's groups and datasets with their attributes")
    p.add_argument("path")
    p.set_defaults(run=describe)

    p = cmd.add_parser("cat", help="print a dataset (or a selection of it) as CSV, streamed")
    p.add_argument("path")
    p.add_argument("dataset", help='dataset, a path inside the file ("group/data")')
    p.add_argument(
        "selection", nargs="?", default="", help="numpy-style selection, e.g. '[0:10, ::2]'"
    )
    p.add_argument("-d", "--delimiter", default=",", help="field separator (%(default)r)")
    p.set_defaults(run=cat)

    p = cmd.add_parser("export", help="download a consistent copy of a file")
    p.add_argument("path")
    p.add_argument("local", metavar="LOCAL_FILE", help='where to write it; "-": stdout')
    p.set_defaults(run=export)

    p = cmd.add_parser("import", help="upload a local HDF5 file")
    p.add_argument("local", metavar="LOCAL_FILE")
    p.add_argument("path")
    p.add_argument("-f", "--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(run=import_)

    p = cmd.add_parser("rm", help="remove files or folders; missing ones are reported (exit 1)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("-f", "--force", action="store_true", help="missing paths are no error")
    p.set_defaults(run=rm)

    p = cmd.add_parser("mv", help="rename or move a file or folder")
    p.add_argument("source")
    p.add_argument("destination")
    p.add_argument("-f", "--overwrite", action="store_true", help="replace the destination")
    p.set_defaults(run=mv)

    p = cmd.add_parser("du", help="bytes and files under a folder (or of one file)")
    p.add_argument("path", nargs="?", default="")
    p.add_argument("--h5", action="store_true", help="only .h5 files")
    p.set_defaults(run=du)


# -- selections --------------------------------------------------------------------------------

_INT = r"[+-]?\d+"


def parse_selection(text: str) -> Key:
    """A numpy-style selection from text: ``"[0:10, ::2]"``, ``"5"``, ``"..., 3"``,
    ``"[[1, 4, 7], :]"``; ``""`` (or ``"[]"``/``"..."``) is everything. ValueError otherwise."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]") and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    if not text or text == "...":
        return None
    items: list[Any] = []
    for part in _split_top(text):
        part = part.strip()
        if part == "...":
            items.append(Ellipsis)
        elif part.startswith("["):
            inner = part[1:-1] if part.endswith("]") else ""
            values = [v.strip() for v in inner.split(",") if v.strip()]
            if not values or not all(re.fullmatch(_INT, v) for v in values):
                raise ValueError(f"not a list of integers: {part!r}")
            items.append([int(v) for v in values])
        elif ":" in part:
            bounds = [b.strip() for b in part.split(":")]
            if len(bounds) > 3 or not all(b == "" or re.fullmatch(_INT, b) for b in bounds):
                raise ValueError(f"not a slice: {part!r}")
            items.append(slice(*(int(b) if b else None for b in bounds)))
        elif re.fullmatch(_INT, part):
            items.append(int(part))
        else:
            raise ValueError(f"not an index, slice, list or '...': {part!r}")
    key = tuple(items)
    normalise_key(key)  # the SDK's own checks (one ellipsis, no zero step)
    return key


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _split_top(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    if any(not p.strip() for p in parts):
        raise ValueError(f"empty item in selection {text!r}")
    return parts


# -- commands ----------------------------------------------------------------------------------


def ls(client: Client, args: argparse.Namespace) -> int:
    ds = client.datasets(args.repository)
    for entry in ds.list_files(args.folder, recursive=args.recursive, h5_only=args.h5):
        name = entry.path + ("/" if entry.is_folder else "")
        if args.long:
            size = "-" if entry.is_folder else human(entry.size)
            print(f"{size:>10}  {when(entry.modified)}  {name}")
        else:
            print(name)
    return 0


def _shape_text(shape: DatasetShape) -> str:
    dims = ", ".join(str(n) for n in shape.shape)
    text = f"({dims}) {shape.dtype}"
    if shape.chunks:
        text += f" chunks {tuple(shape.chunks)}"
    if any(m is None for m in shape.maxshape):
        text += " max " + str(tuple(shape.maxshape)).replace("None", "∞")
    if shape.compression:
        text += f" {shape.compression}"
    return text


def describe(client: Client, args: argparse.Namespace) -> int:
    description = client.datasets(args.repository).describe(args.path)
    print(f"{description.path}  {human(description.size)}")
    for node in description.nodes:
        depth = 0 if node.node == "/" else node.node.count("/")
        indent = "  " * depth
        name = node.node.rsplit("/", 1)[-1]
        if node.shape is not None:
            print(f"{indent}{name}  {_shape_text(node.shape)}")
        else:
            print(f"{indent}{name}/")  # the root is "/"
        for key, value in node.attributes.items():
            print(f"{indent}  @{key} = {value!r}")
    return 0


def cat(client: Client, args: argparse.Namespace) -> int:
    try:
        key = parse_selection(args.selection)
    except (ValueError, IndexError, TypeError) as exc:
        print(f"hoard: bad selection: {exc}", file=sys.stderr)
        return 2
    # streamed block by block (ReadData): a selection of any size prints in bounded memory
    for _, block, _ in client.datasets(args.repository).read_data(args.path, args.dataset, key):
        write_csv(block, args.delimiter)
    return 0


def write_csv(data: np.ndarray, delimiter: str = ",") -> None:
    """Rows of ``data`` on stdout: a 0-d value alone, 1-d one value per line, n-d as rows of
    the last axis."""
    out = csv.writer(sys.stdout, delimiter=delimiter, lineterminator="\n")
    array = np.asarray(data)
    if array.ndim == 0:
        out.writerow([_text(array.item())])
        return
    if array.ndim == 1:
        for value in array.tolist():
            out.writerow([_text(value)])
        return
    for row in array.reshape(-1, array.shape[-1]).tolist():
        out.writerow([_text(v) for v in row])


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def export(client: Client, args: argparse.Namespace) -> int:
    ds = client.datasets(args.repository)
    if args.local == "-":
        size = ds.export(args.path, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        size = ds.export(args.path, args.local)
        print(f"{args.path} -> {args.local} ({human(size)})", file=sys.stderr)
    return 0


def import_(client: Client, args: argparse.Namespace) -> int:
    entry = client.datasets(args.repository).import_file(
        args.local, args.path, overwrite=args.overwrite
    )
    print(f"{args.local} -> {entry.path} ({human(entry.size)})")
    return 0


def rm(client: Client, args: argparse.Namespace) -> int:
    result = client.datasets(args.repository).remove_files(args.paths, ignore_errors=True)
    if args.force:
        return 0
    for path in result.missing:
        print(f"hoard: no file or folder {path}", file=sys.stderr)
    return 1 if result.missing else 0


def mv(client: Client, args: argparse.Namespace) -> int:
    from hoard.errors import FailedPreconditionError

    ds = client.datasets(args.repository)
    try:
        entry = ds.rename_file(args.source, args.destination, overwrite=args.overwrite)
    except FailedPreconditionError as exc:
        if exc.reason != "NOT_A_FILE":
            raise
        entry = ds.rename_folder(args.source, args.destination, overwrite=args.overwrite)
    print(f"{args.source} -> {entry.path}")
    return 0


def du(client: Client, args: argparse.Namespace) -> int:
    usage = client.datasets(args.repository).disk_usage(args.path, h5_only=args.h5)
    print(f"{usage.bytes}\t{usage.files} files\t{human(usage.bytes)}\t{args.path or '.'}")
    return 0
