"""``hoard``: the command line. ``hoard serve`` runs the daemon; the rest talk to one.

Errors are reported as ``hoard: <message>`` on stderr with exit code 1, never a traceback;
``has`` and ``rm`` exit 1 when a key is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from hoard.client import DEFAULT_TARGET, Client, connect
from hoard.errors import HoardError, UnavailableError
from hoard.repository import ProgressCallback, Repository

PROGRESS_THRESHOLD = 4 << 20  # transfers above this get a progress bar (on a terminal)

# Global options taking a value, so that `hoard --target X serve ...` is recognised.
_GLOBAL_WITH_VALUE = ("--target", "--repository", "-r", "--timeout")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    split = _serve_split(args_list)
    if split is not None:
        return _serve(args_list[split + 1 :])
    args = build_parser().parse_args(args_list)
    try:
        with connect(args.target, timeout=args.timeout) as client:
            return args.run(client, args)
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
    parser.add_argument("--version", action="version", version=f"hoard {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("serve", help="run the daemon (hoard serve --help for its options)")

    p = sub.add_parser("put", help="store files (or stdin) and print their keys")
    p.add_argument("files", nargs="*", metavar="FILE", help='files to store; "-" or none: stdin')
    p.set_defaults(run=_put)

    for name in ("get", "cat"):
        p = sub.add_parser(name, help="write an object (or a range of it) to stdout or a file")
        p.add_argument("key")
        p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
        p.add_argument("--offset", type=_non_negative, default=0)
        p.add_argument("--length", type=_non_negative, default=None)
        p.set_defaults(run=_get)

    p = sub.add_parser("has", help='print "KEY yes|no" per key; exit 1 if any is missing')
    p.add_argument("keys", nargs="+", metavar="KEY")
    p.set_defaults(run=_has)

    p = sub.add_parser("stat", help="how an object is stored")
    p.add_argument("key")
    p.set_defaults(run=_stat)

    p = sub.add_parser("ls", help="list keys, in key order")
    p.add_argument("--limit", type=_non_negative, default=None, metavar="N")
    p.set_defaults(run=_ls)

    p = sub.add_parser("rm", help="delete objects; missing keys are reported (exit 1)")
    p.add_argument("keys", nargs="+", metavar="KEY")
    p.set_defaults(run=_rm)

    p = sub.add_parser("info", help="object counts and sizes")
    p.add_argument("--detailed", action="store_true", help="also list every pack")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=_info)

    p = sub.add_parser("maintain", help="pack, compact and reclaim space (live)")
    p.add_argument("--dry-run", action="store_true", help="only report what would be done")
    p.set_defaults(run=_maintain)

    p = sub.add_parser("repo", help="create, list or erase repositories")
    repo_sub = p.add_subparsers(dest="repo_command", required=True, metavar="ACTION")
    q = repo_sub.add_parser("create", help="create a repository (no-op if it exists)")
    q.add_argument("name")
    q.set_defaults(run=_repo_create)
    q = repo_sub.add_parser("ls", help="list repositories")
    q.set_defaults(run=_repo_ls)
    q = repo_sub.add_parser("rm", help="erase a repository and everything in it")
    q.add_argument("name")
    q.set_defaults(run=_repo_rm)
    return parser


# -- serve ---------------------------------------------------------------------------------


def _serve_split(argv: list[str]) -> int | None:
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


def _serve(argv: list[str]) -> int:
    try:
        from hoard_server import daemon
    except ImportError:
        print("the daemon needs the server extra: pip install 'hoard[server]'", file=sys.stderr)
        return 2
    return daemon.main(argv) or 0


# -- object commands -------------------------------------------------------------------------


def _put(client: Client, args: argparse.Namespace) -> int:
    repo = _repository(client, args)
    for path in args.files or ["-"]:
        if path == "-":
            stdin = sys.stdin.buffer
            with _progress_bar(_stream_size(stdin), "put -") as progress:
                key = repo.put_object_from_filelike(stdin, progress=progress)
            print(key)
        else:
            with (
                open(path, "rb") as handle,
                _progress_bar(_stream_size(handle), f"put {path}") as progress,
            ):
                key = repo.put_object_from_filelike(handle, progress=progress)
            print(f"{key}  {path}")
    return 0


def _get(client: Client, args: argparse.Namespace) -> int:
    repo = _repository(client, args)
    with _progress_bar(None, args.key[:12]) as progress:
        chunks = repo.iter_chunks(args.key, args.offset, args.length, progress=progress)
        first = next(chunks, b"")  # a missing key fails here, before -o FILE is created
        with open(args.output, "wb") if args.output else contextlib.nullcontext() as out:
            sink = out if out is not None else sys.stdout.buffer
            sink.write(first)
            for chunk in chunks:
                sink.write(chunk)
            sink.flush()
    return 0


def _has(client: Client, args: argparse.Namespace) -> int:
    found = _repository(client, args).has_objects(args.keys)
    for key, exists in zip(args.keys, found, strict=True):
        print(f"{key} {'yes' if exists else 'no'}")
    return 0 if all(found) else 1


def _stat(client: Client, args: argparse.Namespace) -> int:
    st = _repository(client, args).stat(args.key)
    print(f"key:          {st.key}")
    print(f"size:         {st.raw_size} ({_human(st.raw_size)})")
    print(f"stored size:  {st.stored_size} ({_human(st.stored_size)})")
    print(f"encoding:     {st.encoding}")
    print(f"pack:         {st.pack_id}")
    return 0


def _ls(client: Client, args: argparse.Namespace) -> int:
    repo = _repository(client, args)
    keys: Iterator[str] | list[str] = repo.list_objects()
    if args.limit is not None:
        keys = repo.list_objects_page(args.limit)[0] if args.limit else []
    out = sys.stdout
    for key in keys:
        out.write(key + "\n")
    return 0


def _rm(client: Client, args: argparse.Namespace) -> int:
    deleted = set(_repository(client, args).delete_objects(args.keys, require_all=False))
    missing = [key for key in dict.fromkeys(args.keys) if key not in deleted]
    for key in missing:
        print(f"hoard: no object {key}", file=sys.stderr)
    return 1 if missing else 0


def _info(client: Client, args: argparse.Namespace) -> int:
    info = _repository(client, args).get_info(detailed=args.detailed)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    sizes = ("raw_bytes", "stored_bytes", "on_disk_bytes", "reclaimable_bytes")
    for name, value in info.items():
        if name == "pack_details":
            continue
        if name in sizes:
            value = f"{value} ({_human(value)})"
        elif name == "compression_ratio":
            value = f"{value:.2f}"
        print(f"{name.replace('_', ' ') + ':':<20}{value}")
    for pack in info.get("pack_details", []):
        kind = " single-object" if pack["single_object"] else ""
        print(
            f"  pack {pack['pack_id']}: {_human(pack['size'])}, live {_human(pack['live_bytes'])}"
            f", dead {_human(pack['dead_bytes'])}{kind}"
        )
    return 0


def _maintain(client: Client, args: argparse.Namespace) -> int:
    def report(step: dict[str, Any]) -> None:
        total = f"/{step['total']}" if step["total"] else ""
        print(f"{step['stage']}: {step['message']} [{step['done']}{total}]", file=sys.stderr)

    last = _repository(client, args).maintain(dry_run=args.dry_run, progress=report)
    if last:
        print(
            f"reclaimable: {_human(last['reclaimable_bytes'])}, "
            f"reclaimed: {_human(last['reclaimed_bytes'])}"
        )
    return 0


# -- repositories ----------------------------------------------------------------------------


def _repo_create(client: Client, args: argparse.Namespace) -> int:
    info = client.create_repository(args.name)
    print(f"{info.name} {info.uuid}")
    return 0


def _repo_ls(client: Client, args: argparse.Namespace) -> int:
    for info in client.list_repositories():
        print(f"{info.name} {info.uuid}")
    return 0


def _repo_rm(client: Client, args: argparse.Namespace) -> int:
    client.erase_repository(args.name)
    return 0


# -- helpers -------------------------------------------------------------------------------


def _repository(client: Client, args: argparse.Namespace) -> Repository:
    return client.repository(args.repository)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _stream_size(handle: BinaryIO) -> int | None:
    try:
        st = os.fstat(handle.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return st.st_size if st.st_size > 0 else None


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


@contextlib.contextmanager
def _progress_bar(total: int | None, label: str) -> Iterator[ProgressCallback | None]:
    """A progress callback drawing a tqdm bar on stderr, for transfers over 4 MiB on a
    terminal; None (no bar) otherwise or when tqdm is not installed."""
    if not sys.stderr.isatty():
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield None
        return
    bar: Any = None

    def update(done: int, size: int | None) -> None:
        nonlocal bar
        size = size if size is not None else total
        if bar is None:
            if size is None or size <= PROGRESS_THRESHOLD:
                return
            bar = tqdm(
                total=size, desc=label, unit="B", unit_scale=True, unit_divisor=1024, leave=False
            )
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def _version() -> str:
    from hoard import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
