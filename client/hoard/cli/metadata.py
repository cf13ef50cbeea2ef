"""``hoard meta sync|query|count|schema|rm``: the metadata cache of a repository.

hoard meta sync /data/run7                       # extracted here, pushed (a progress bar)
hoard meta sync /srv/instrument --server         # on the daemon's host, under --sync-root
hoard meta query 'channel == 1 and process > 100' --order-by process:desc --limit 10
hoard meta query 'partnumber prefix "PN-"' --fields process,channel --json
hoard meta count 'compression_frq in (4, 8)'
hoard meta schema
hoard meta rm /data/run7/old_00001p3c0b00_dump_00.000

The filter is the text form (``==  != < <= > >= in (...) prefix and or not``; strings in
quotes, ``null``, ``true``/``false``, ``datetime("2024-01-31T12:00:00")``, odd field names in
backquotes). ``--order-by`` takes field names, ``name:desc`` (or ``--order-by=-name``) for
descending.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from hoard.cli.output import Progress, positive
from hoard.client import Client
from hoard.metadata.client import MetadataCache, MetadataRecord, SyncProgress
from hoard.metadata.query import M, Select, select
from hoard.metadata.scan import DEFAULT_GLOB, DEFAULT_REGEX

__all__ = ["register"]


def register(sub: Any) -> None:
    meta = sub.add_parser("meta", help="the metadata cache: sync directories, query files")
    cmd = meta.add_subparsers(dest="meta_command", required=True, metavar="COMMAND")

    p = cmd.add_parser("sync", help="bring the cache in step with directories (qass's "
                                    "synchronize_directory)")
    p.add_argument("directories", nargs="+", metavar="DIR")
    p.add_argument("--server", action="store_true",
                   help="sync on the daemon's host (DIR under its --sync-root) instead of "
                        "extracting here and pushing")
    p.add_argument("--machine-id", default=None,
                   help='whose files these are (default: $HOARD_MACHINE_ID, "" when the '
                        "daemon runs here, else this host's name; --server: \"\")")
    p.add_argument("--delete-stale", action="store_true",
                   help="drop the records of files gone from the directories")
    p.add_argument("--regex", default=DEFAULT_REGEX, help="file names must match (%(default)s)")
    p.add_argument("--glob", default=DEFAULT_GLOB, help="preselection of names (%(default)s)")
    p.add_argument("--no-recursive", action="store_true", help="leave subdirectories out")
    p.add_argument("--batch-size", type=positive, default=None,
                   help="records per transaction (default 1000)")
    p.set_defaults(run=sync)

    for name, helptext in (("query", "the files matching a filter"),
                           ("count", "how many records match a filter")):
        p = cmd.add_parser(name, help=helptext)
        p.add_argument("filter", nargs="?", default="",
                       help="e.g. 'channel == 1 and process > 100' (none: every record)")
        if name == "query":
            p.add_argument("--order-by", action="append", default=[], metavar="FIELD",
                           help="order by FIELD; FIELD:desc (or --order-by=-FIELD) for "
                                "descending; repeat or separate by commas")
            p.add_argument("--limit", type=positive, default=None)
            shown = p.add_mutually_exclusive_group()
            shown.add_argument("--fields", default=None, metavar="A,B",
                               help="print these fields after each path")
            shown.add_argument("--records", action="store_true", help="print whole records")
            p.add_argument("--json", action="store_true", help="one JSON object a line")
            p.set_defaults(run=query)
        else:
            p.set_defaults(run=count)

    p = cmd.add_parser("schema", help="every field, its types and how many records hold it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=schema)

    p = cmd.add_parser("rm", help="drop files' records (qass's remove_files_from_cache)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--machine-id", default=None, help="whose records (default: this machine)")
    p.set_defaults(run=rm)


def _cache(client: Client, args: argparse.Namespace) -> MetadataCache:
    return client.metadata(args.repository)


def _counts(p: SyncProgress) -> str:
    return (f"{p.added} added, {p.updated} updated, {p.removed} removed, {p.failed} failed, "
            f"{p.unchanged} unchanged")


def sync(client: Client, args: argparse.Namespace) -> int:
    cache = _cache(client, args)
    where = "on the daemon" if args.server else "here"
    with Progress("file", min_interval=2.0) as bar:
        final = SyncProgress()
        for step in cache.iter_synchronize_directory(
                *args.directories, sync_subdirectories=not args.no_recursive,
                regex_pattern=args.regex, delete_stale_entries=args.delete_stale,
                machine_id=args.machine_id, glob_pattern=args.glob,
                batch_size=args.batch_size, server_side=args.server):
            final = step
            bar.update(f"sync ({where})", step.scanned, 0, _counts(step),
                       f"sync: {step.scanned} files, {_counts(step)}", final=step.done)
    print(f"{final.scanned} files scanned: {_counts(final)}")
    return 0


def _query(args: argparse.Namespace) -> Select:
    fields = [f.strip() for f in (args.fields or "").split(",") if f.strip()]
    q = select(*fields) if fields else select(M)
    if args.filter.strip():
        q = q.filter(args.filter)
    order = [_order_key(o) for spec in args.order_by for o in spec.split(",") if o.strip()]
    return q.order_by(*order).limit(args.limit)


def _order_key(spec: str) -> str:
    """``name``, ``-name``, ``name:asc`` or ``name:desc`` as the builder's ``name``/``-name``."""
    name, _, direction = spec.strip().rpartition(":") if ":" in spec else (spec.strip(), "", "")
    if direction.lower() not in ("", "asc", "desc"):
        name, direction = spec.strip(), ""
    return ("-" if direction.lower() == "desc" else "") + name


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _json_line(record: MetadataRecord, fields: list[str] | None) -> str:
    names = fields if fields is not None else sorted(record)
    out = {"path": record.path, **{n: _plain(record.get(n)) for n in names}}
    if fields is None:
        out["machine_id"] = record.machine_id
    return json.dumps(out, ensure_ascii=False)


def query(client: Client, args: argparse.Namespace) -> int:
    cache = _cache(client, args)
    q = _query(args)
    fields = list(q.fields or ())
    output = None if fields or args.records else "paths"
    shown: list[str] | None = None if args.records else fields  # None: every field
    for record in cache.query(q, output=output):
        if args.json:
            print(_json_line(record, shown))
        elif fields:
            print("\t".join([record.path, *(_text(record.get(f)) for f in fields)]))
        elif args.records:
            print(record.path)
            for name in sorted(record):
                print(f"  {name} = {_text(record[name])}")
        else:
            print(record.path)
    return 0


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def count(client: Client, args: argparse.Namespace) -> int:
    print(_cache(client, args).count(args.filter))
    return 0


def schema(client: Client, args: argparse.Namespace) -> int:
    fields = _cache(client, args).schema()
    if args.json:
        for f in fields:
            print(json.dumps({"name": f.name, "total": f.total, "types": f.types}))
        return 0
    width = max((len(f.name) for f in fields), default=5)
    print(f"{'field':<{width}}  {'records':>8}  types")
    for f in fields:
        types = ", ".join(f"{t} {n}" for t, n in sorted(f.types.items(), key=lambda x: -x[1]))
        print(f"{f.name:<{width}}  {f.total:>8}  {types}")
    return 0


def rm(client: Client, args: argparse.Namespace) -> int:
    removed = _cache(client, args).remove_files_from_cache(args.files, args.machine_id)
    print(f"{removed} of {len(args.files)} records removed")
    return 0 if removed == len(args.files) else 1

