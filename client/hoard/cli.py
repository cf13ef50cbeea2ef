"""``hoard``: the command line. ``hoard serve`` runs the daemon; the rest talk to one.

Errors are reported as ``hoard: <message>`` on stderr with exit code 1, never a traceback;
``has`` and ``rm`` exit 1 when a key is missing, ``verify`` when it finds a problem.
``restore`` works offline, on the daemon's host with the daemon stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from hoard.client import DEFAULT_TARGET, Client, connect
from hoard.errors import HoardError, UnavailableError
from hoard.repository import ProgressCallback, Repository, backup_destination

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
        if getattr(args, "offline", False):  # runs here, without a daemon
            return args.run(None, args)
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

    p = sub.add_parser("maintain", help="compact packs and reclaim space (live)")
    p.add_argument("--dry-run", action="store_true", help="only report what would be done")
    p.add_argument(
        "--dead-fraction",
        type=_fraction,
        default=None,
        metavar="F",
        help="compact packs with at least this fraction of dead bytes (daemon default 0.25)",
    )
    p.add_argument(
        "--max-packs",
        type=_positive,
        default=None,
        metavar="N",
        help="stop after N packs; run again to continue",
    )
    p.set_defaults(run=_maintain)

    p = sub.add_parser(
        "verify", help="re-read and re-hash stored objects; exit 1 if any is damaged or missing"
    )
    p.add_argument("--pack", type=_positive, default=None, metavar="N", help="only pack N")
    p.add_argument(
        "--sample",
        type=_fraction,
        default=None,
        metavar="F",
        help="check a random fraction F of the objects",
    )
    p.set_defaults(run=_verify)

    p = sub.add_parser(
        "backup",
        help="snapshot the repository into a directory on the daemon's host (live, incremental)",
    )
    p.add_argument(
        "destination", metavar="DEST", help="directory on the daemon's host, under a backup root"
    )
    p.set_defaults(run=_backup)

    p = sub.add_parser(
        "restore",
        help="restore a backup into a data directory (offline: on the daemon's host, daemon "
        "stopped)",
    )
    p.add_argument("backup_dir", metavar="BACKUP_DIR", help="a directory written by hoard backup")
    p.add_argument("--data-dir", required=True, metavar="DIR", help="the daemon's data directory")
    p.add_argument(
        "--repository",
        dest="restore_as",
        default=None,
        metavar="NAME",
        help="restore under this repository name (default: the backed-up one)",
    )
    p.set_defaults(run=_restore, offline=True)

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


SERVER_MISSING = "the daemon needs the server extra: pip install 'hoard[server]'"


def _serve(argv: list[str]) -> int:
    try:
        from hoard_server import daemon
    except ImportError:
        print(SERVER_MISSING, file=sys.stderr)
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
        elif name in ("last_maintenance", "last_verification"):
            value = _when(value)
        print(f"{name.replace('_', ' ') + ':':<26}{value}")
    for pack in info.get("pack_details", []):
        kind = " single-object" if pack["single_object"] else ""
        print(
            f"  pack {pack['pack_id']}: {_human(pack['size'])}, live {_human(pack['live_bytes'])}"
            f", dead {_human(pack['dead_bytes'])}{kind}"
        )
    return 0


def _maintain(client: Client, args: argparse.Namespace) -> int:
    with _Progress("pack") as bar:

        def report(step: dict[str, Any]) -> None:
            for problem in step.get("problems", ()):
                bar.write(_problem_line(problem))
            count = f" [{step['done']}/{step['total']} packs]" if step["total"] else ""
            bar.update(
                step["stage"],
                step["done"],
                step["total"],
                f"{_human(step['reclaimed_bytes'])} reclaimed",
                f"{step['stage']}: {step['message']}{count}",
            )

        last = _repository(client, args).maintain(
            dry_run=args.dry_run,
            dead_fraction=args.dead_fraction,
            max_packs=args.max_packs,
            progress=report,
        )
    if not last:
        print("nothing reported")
    elif last.get("dry_run") or args.dry_run:
        print(
            f"dry run: {last['total']} packs would be compacted, "
            f"{_human(last['reclaimable_bytes'])} reclaimable; nothing was changed"
        )
    else:
        left = last["total"] - last["done"]
        print(
            f"packs compacted: {last['done']} of {last['total']}, "
            f"bytes reclaimed: {last['reclaimed_bytes']} ({_human(last['reclaimed_bytes'])}), "
            f"moved: {last['moved_objects']} objects ({_human(last['moved_bytes'])})"
            + (f"; {left} packs left, run again to continue" if left > 0 else "")
        )
    problems = last.get("problem_count", 0) if last else 0
    if problems:
        print(
            f"{problems} damaged record(s): their packs were kept, nothing was lost; "
            "run hoard verify and see docs/operations.md, 'Integrity'"
        )
        return 1
    return 0


def _verify(client: Client, args: argparse.Namespace) -> int:
    with _Progress("obj", min_interval=2.0) as bar:

        def report(step: dict[str, Any]) -> None:
            for problem in step["problems"]:
                bar.write(_problem_line(problem))
            total = step["total_objects"]
            bar.update(
                "verify",
                step["checked_objects"],
                total,
                f"{step['problem_count']} problems",
                f"verify: {step['checked_objects']}/{total} objects, "
                f"{_human(step['checked_bytes'])}, {step['problem_count']} problems",
                final=bool(step["done"]),
            )

        result = _repository(client, args).verify(
            pack_id=args.pack, sample=args.sample, progress=report
        )
    count = result["problem_count"]
    print(
        f"checked {result['checked_objects']} of {result['total_objects']} objects "
        f"({_human(result['checked_bytes'])}): "
        + ("no problems" if not count else f"{count} problem{'s' if count != 1 else ''}")
    )
    return 0 if result["ok"] else 1


def _problem_line(problem: dict[str, Any]) -> str:
    return f"{problem['key'] or '-'}  pack {problem['pack_id']}: {problem['problem']}"


def _backup(client: Client, args: argparse.Namespace) -> int:
    repo = _repository(client, args)
    with _Progress("pack") as bar:

        def report(step: dict[str, Any]) -> None:
            done = step["packs_copied"] + step["packs_unchanged"]
            bar.update(
                step["stage"],
                done,
                step["packs_total"],
                _human(step["bytes_copied"]),
                f"{step['stage']}: {step['message']} [{done}/{step['packs_total']} packs, "
                f"{_human(step['bytes_copied'])} copied]",
            )

        last = repo.backup(args.destination, progress=report)
    destination = backup_destination(client.target, args.destination)
    if last:
        print(
            f"backed up {last['objects']} objects to {destination}: "
            f"{last['packs_copied']} packs copied ({_human(last['bytes_copied'])}), "
            f"{last['packs_unchanged']} unchanged"
        )
    else:
        print(f"backed up to {destination}")
    return 0


def _restore(client: Client | None, args: argparse.Namespace) -> int:
    try:
        import hoard_server
    except ImportError:
        print(SERVER_MISSING, file=sys.stderr)
        return 2
    try:
        from hoard_server import backup, errors
    except ImportError as exc:
        version = getattr(hoard_server, "__version__", "?")
        print(f"hoard: this hoard server ({version}) cannot restore: {exc}", file=sys.stderr)
        return 1
    try:
        result = backup.restore(args.backup_dir, args.data_dir, args.restore_as)
    except errors.HoardError as exc:
        print(f"hoard: {exc}", file=sys.stderr)
        return 1
    print(
        f"restored repository {result['repository']!r} into {args.data_dir}: "
        f"{result['objects']} objects, {result['packs']} packs ({_human(result['bytes'])})"
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


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1]: {text}")
    return value


def _when(timestamp: float | None) -> str:
    """A local date and how long ago, for seconds since the epoch; "never" for None."""
    if not timestamp:
        return "never"
    moment = datetime.datetime.fromtimestamp(timestamp).astimezone()
    age = time.time() - timestamp
    if age < 0:
        ago = "in the future"
    elif age < 120:
        ago = f"{age:.0f} s ago"
    elif age < 7200:
        ago = f"{age / 60:.0f} min ago"
    elif age < 2 * 86400:
        ago = f"{age / 3600:.0f} h ago"
    else:
        ago = f"{age / 86400:.0f} days ago"
    return f"{moment:%Y-%m-%d %H:%M:%S %Z} ({ago})"


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


class _Progress:
    """Progress of a long operation on stderr: a tqdm bar on a terminal, else one line per
    report (at most one per ``min_interval`` seconds, and always the final one)."""

    def __init__(self, unit: str, *, min_interval: float = 0.0) -> None:
        self._unit = unit
        self._min_interval = min_interval
        self._bar: Any = None
        self._tqdm: Any = None
        self._last_line = 0.0
        self._stage = ""
        if sys.stderr.isatty():
            with contextlib.suppress(ImportError):
                from tqdm import tqdm

                self._tqdm = tqdm

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def update(
        self, stage: str, done: int, total: int, postfix: str, line: str, *, final: bool = False
    ) -> None:
        if self._tqdm is None:
            now = time.monotonic()
            if final or stage != self._stage or now - self._last_line >= self._min_interval:
                print(line, file=sys.stderr, flush=True)
                self._last_line = now
            self._stage = stage
            return
        if self._bar is None:
            self._bar = self._tqdm(
                total=total or None, unit=self._unit, leave=False, file=sys.stderr
            )
        bar = self._bar
        if (total or None) != bar.total:
            bar.total = total or None
        bar.n = done
        bar.set_description(stage, refresh=False)
        bar.set_postfix_str(postfix, refresh=False)
        bar.refresh()

    def write(self, text: str) -> None:
        """A line on stdout that does not break the bar."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)


def _version() -> str:
    from hoard import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
