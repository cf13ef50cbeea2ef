"""``hoard info|maintain|verify|backup|restore``: housekeeping. ``maintain`` exits 1 when it
kept damaged records, ``verify`` when it finds a problem; ``restore`` works offline, on the
daemon's host with the daemon stopped."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hoard.admin import backup_destination
from hoard.cli.output import Progress, fraction, human, positive, when
from hoard.cli.serve import SERVER_MISSING
from hoard.client import Client
from hoard.reports import BackupProgress, MaintainProgress, Problem, VerifyProgress

_SIZES = ("raw_bytes", "stored_bytes", "on_disk_bytes", "reclaimable_bytes", "dataset_bytes")


def register(sub: Any) -> None:
    p = sub.add_parser("info", help="object and dataset file counts and sizes")
    p.add_argument("--detailed", action="store_true", help="also list every pack")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=info)

    p = sub.add_parser("maintain", help="compact packs and reclaim space (live)")
    p.add_argument("--dry-run", action="store_true", help="only report what would be done")
    p.add_argument(
        "--dead-fraction",
        type=fraction,
        default=None,
        metavar="F",
        help="compact packs with at least this fraction of dead bytes (daemon default 0.25)",
    )
    p.add_argument(
        "--max-packs",
        type=positive,
        default=None,
        metavar="N",
        help="stop after N packs; run again to continue",
    )
    p.set_defaults(run=maintain)

    p = sub.add_parser(
        "verify",
        help="re-read and re-hash stored objects, read every dataset file; exit 1 if any is "
        "damaged or missing",
    )
    p.add_argument("--pack", type=positive, default=None, metavar="N", help="only pack N")
    p.add_argument(
        "--sample",
        type=fraction,
        default=None,
        metavar="F",
        help="check a random fraction F of the objects",
    )
    p.set_defaults(run=verify)

    p = sub.add_parser(
        "backup",
        help="snapshot the repository into a directory on the daemon's host (live, incremental)",
    )
    p.add_argument(
        "destination", metavar="DEST", help="directory on the daemon's host, under a backup root"
    )
    p.set_defaults(run=backup)

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
    p.set_defaults(run=restore, offline=True)


def info(client: Client, args: argparse.Namespace) -> int:
    facts = client.repository(args.repository).get_info(detailed=args.detailed)
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    for name, value in facts.items():
        if name == "pack_details":
            continue
        if name in _SIZES:
            value = f"{value} ({human(value)})"
        elif name == "compression_ratio":
            value = f"{value:.2f}"
        elif name in ("last_maintenance", "last_verification"):
            value = when(value)
        print(f"{name.replace('_', ' ') + ':':<26}{value}")
    for pack in facts.get("pack_details", []):
        kind = " single-object" if pack["single_object"] else ""
        print(
            f"  pack {pack['pack_id']}: {human(pack['size'])}, live {human(pack['live_bytes'])}"
            f", dead {human(pack['dead_bytes'])}{kind}"
        )
    return 0


def maintain(client: Client, args: argparse.Namespace) -> int:
    with Progress("pack") as bar:

        def report(step: MaintainProgress) -> None:
            for problem in step.problems:
                bar.write(problem_line(problem))
            count = f" [{step.done}/{step.total} packs]" if step.total else ""
            bar.update(
                step.stage,
                step.done,
                step.total,
                f"{human(step.reclaimed_bytes)} reclaimed",
                f"{step.stage}: {step.message}{count}",
            )

        last = client.repository(args.repository).maintain(
            dry_run=args.dry_run,
            dead_fraction=args.dead_fraction,
            max_packs=args.max_packs,
            progress=report,
        )
    if not last.stage:
        print("nothing reported")
    elif last.dry_run or args.dry_run:
        print(
            f"dry run: {last.total} packs would be compacted, "
            f"{human(last.reclaimable_bytes)} reclaimable; nothing was changed"
        )
    else:
        left = last.total - last.done
        print(
            f"packs compacted: {last.done} of {last.total}, "
            f"bytes reclaimed: {last.reclaimed_bytes} ({human(last.reclaimed_bytes)}), "
            f"moved: {last.moved_objects} objects ({human(last.moved_bytes)})"
            + (f"; {left} packs left, run again to continue" if left > 0 else "")
        )
    if last.problem_count:
        print(
            f"{last.problem_count} damaged record(s): their packs were kept, nothing was lost; "
            "run hoard verify and see docs/operations.md, 'Integrity'"
        )
        return 1
    return 0


def verify(client: Client, args: argparse.Namespace) -> int:
    with Progress("obj", min_interval=2.0) as bar:

        def report(step: VerifyProgress) -> None:
            for problem in step.problems:
                bar.write(problem_line(problem))
            bar.update(
                "verify",
                step.checked_objects,
                step.total_objects,
                f"{step.problem_count} problems",
                f"verify: {step.checked_objects}/{step.total_objects} objects, "
                f"{human(step.checked_bytes)}, {step.problem_count} problems",
                final=step.done,
            )

        result = client.repository(args.repository).verify(
            pack_id=args.pack, sample=args.sample, progress=report
        )
    count = result.problem_count
    print(
        f"checked {result.checked_objects} of {result.total_objects} objects "
        f"({human(result.checked_bytes)}): "
        + ("no problems" if not count else f"{count} problem{'s' if count != 1 else ''}")
    )
    return 0 if result.ok else 1


def problem_line(problem: Problem) -> str:
    if problem.path == "metadata" and problem.problem.startswith("metadata cache: "):
        return problem.problem  # the cache's own folder, not a dataset file
    if problem.path:
        return f"dataset file {problem.path}: {problem.problem}"
    return f"{problem.key or '-'}  pack {problem.pack_id}: {problem.problem}"


def backup(client: Client, args: argparse.Namespace) -> int:
    with Progress("pack") as bar:

        def report(step: BackupProgress) -> None:
            done = step.packs_copied + step.packs_unchanged
            bar.update(
                step.stage,
                done,
                step.packs_total,
                human(step.bytes_copied),
                f"{step.stage}: {step.message} [{done}/{step.packs_total} packs, "
                f"{human(step.bytes_copied)} copied]",
            )

        last = client.repository(args.repository).backup(args.destination, progress=report)
    destination = backup_destination(client.target, args.destination)
    if last.stage:
        print(
            f"backed up {last.objects} objects to {destination}: "
            f"{last.packs_copied} packs copied ({human(last.bytes_copied)}), "
            f"{last.packs_unchanged} unchanged; {last.files_copied} dataset files copied "
            f"({human(last.file_bytes)})"
        )
    else:
        print(f"backed up to {destination}")
    return 0


def restore(client: Client | None, args: argparse.Namespace) -> int:
    """Offline, on the daemon's host: the server package does the work."""
    try:
        from hoard_server import commands
    except ImportError:
        print(SERVER_MISSING, file=sys.stderr)
        return 2
    return commands.restore(args.backup_dir, args.data_dir, args.restore_as)
